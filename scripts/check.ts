/**
 * `npm run check -- [agents file]`: checks an agents file as Baton loads it, at start and on
 * SIGHUP: against the tools registered in code, with the HTTP tools' `${NAME}`s read from this
 * environment. Needs none of Baton's other settings. Without a path, the file Baton would load:
 * BATON_AGENTS_FILE, or agents.yml.
 */
import { loadAgentsFile } from "../src/config/agents-file.ts";
import { loadAgentsFilePath, misspelledEnv } from "../src/config/env.ts";
import { ignoredNote } from "../src/config/near-names.ts";
import { demoTools } from "../src/domain/demo-tools.ts";
import { isBatonError } from "../src/errors.ts";

const [given] = process.argv.slice(2);
// npm runs a script from the package's folder, where Baton starts too; a path given on the
// command line is from the folder npm was run in.
if (given !== undefined && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);
// A setting under a near miss of its name (BATON_AGENTS_FILE among them) is said first: the start
// would only warn of it.
for (const typo of misspelledEnv()) console.warn(`warning: ${ignoredNote(typo)}`);
const path = given ?? loadAgentsFilePath();
try {
  // The tools src/start/agents.ts registers when it is given none, as `npm start` does.
  const { agents } = await loadAgentsFile(path, demoTools);
  console.log(`${path}: ${agents.length} agent${agents.length === 1 ? "" : "s"}, OK`);
} catch (error) {
  if (!(isBatonError(error) && error.fault === "operator")) throw error;
  console.error(error.message);
  process.exitCode = 1;
}
