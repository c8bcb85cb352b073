import type { AgentConfig, AgentsFile } from "../../config/agents-schema.ts";
import { nearestOf } from "../typos.ts";

export interface Agent extends AgentConfig {
  model: string;
}

/** The agents of one agents file, looked up by id and by the channel they take new work in. */
export interface AgentDirectory {
  readonly file: AgentsFile;
  get(id: string): Agent | undefined;
  require(id: string): Agent;
  all(): readonly Agent[];
  /** The agent that takes new work in a channel: the channel's claimant, else the entry agent. */
  entryFor(channelId: string): Agent;
  /**
   * "@Baton billing: ..." names an agent first; matches an id or a display name, or, with `typos`,
   * a typo of one ("fulfilment") when no other agent is as near (see `typosAllowed`).
   */
  named(word: string, options?: { typos?: boolean }): Agent | undefined;
  /** How an agent speaks; one removed from the agents file since keeps its id and a neutral icon. */
  persona(id: string): { name: string; icon: string };
}

/** How "@Baton <word>:" compares a word with an agent's id or name: letters and digits only. */
export const normalise = (text: string) => text.toLowerCase().replace(/[^a-z0-9]+/g, "");

/**
 * Typos read as an agent's name or id (letters and digits, see `normalise`), by the shorter of the
 * two words: none under 6 letters, where a typo is as likely another word ("bill", "ops"); one up
 * to 8, two from 9 ("fulfilment" for "fulfillment"); and never a word two letters longer or shorter
 * ("search" is not "research").
 */
function typosAllowed(word: string, spelling: string): number {
  if (Math.abs(word.length - spelling.length) > 1) return -1;
  const shorter = Math.min(word.length, spelling.length);
  return shorter < 6 ? 0 : shorter < 9 ? 1 : 2;
}

export function agentDirectory(file: AgentsFile): AgentDirectory {
  const agents = file.agents.map((a) =>
    Object.freeze({ ...a, model: a.model ?? file.defaults.model }),
  );
  const byId = new Map(agents.map((a) => [a.id, a]));
  const byChannel = new Map<string, Agent>();
  for (const agent of agents) for (const channel of agent.channels) byChannel.set(channel, agent);
  const fallback = (file.defaults.entry_agent && byId.get(file.defaults.entry_agent)) || agents[0];
  if (!fallback) throw new Error("an agents file has at least one agent");
  return {
    file,
    get: (id) => byId.get(id),
    require(id) {
      const agent = byId.get(id);
      if (!agent) throw new Error(`unknown agent ${id}`);
      return agent;
    },
    all: () => agents,
    entryFor: (channelId) => byChannel.get(channelId) ?? fallback,
    persona(id) {
      const agent = byId.get(id);
      return agent ? { name: agent.name, icon: agent.icon } : { name: id, icon: ":robot_face:" };
    },
    named(word, options = {}) {
      const key = normalise(word);
      if (!key) return undefined;
      const spellings = (a: Agent) => [normalise(a.id), normalise(a.name)];
      const exact = agents.find((a) => spellings(a).includes(key));
      if (exact || !options.typos) return exact;
      return nearestOf(key, agents, spellings, (spelling) => typosAllowed(key, spelling));
    },
  };
}
