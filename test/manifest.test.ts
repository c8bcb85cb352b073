import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { Ajv, type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";
import { parse } from "yaml";

// Slack's published schema (slackapi/manifest-schema), kept in ../shared beside the repo.
const SCHEMA_DIR = new URL("../../shared/data/slack-manifest-schema/", import.meta.url);
// The dispatcher refers to the versioned schemas by these URLs; they are served from disk instead.
const REMOTE = "https://raw.githubusercontent.com/slackapi/manifest-schema/v0.5.0/schemas/";

function readJson(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(name, SCHEMA_DIR), "utf8"));
}

function compileManifestSchema(): ValidateFunction {
  // Strict (an unknown keyword or format fails), minus two style rules Slack's dispatcher breaks.
  const ajv = new Ajv({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
  // ajv-formats is CommonJS; under nodenext its default export is reached through `.default`.
  addFormats.default(ajv);
  // Slack's schema adds two keywords of its own: `_note` (a comment) and `regex` (background_color's
  // pattern, enforced here as one).
  ajv.addKeyword("_note");
  ajv.addKeyword({
    keyword: "regex",
    type: "string",
    schemaType: "string",
    validate: (pattern: string, data: string) => new RegExp(pattern, "u").test(data),
  });
  for (const version of ["1.0.0", "2.0.0"]) {
    const name = `manifest.schema.${version}.json`;
    ajv.addSchema(readJson(name), `${REMOTE}${name}`);
  }
  return ajv.compile(readJson("manifest.schema.json"));
}

interface Manifest {
  display_information: { name: string };
  features: {
    bot_user: { display_name: string; always_online?: boolean };
    app_home: { home_tab_enabled?: boolean; messages_tab_enabled?: boolean };
    slash_commands: { command: string; url?: string; usage_hint?: string }[];
  };
  oauth_config: { scopes: { bot: string[] } };
  settings: {
    event_subscriptions: { request_url?: string; bot_events: string[] };
    interactivity: { is_enabled: boolean; request_url?: string };
    socket_mode_enabled: boolean;
    token_rotation_enabled: boolean;
  };
}

const manifestText = readFileSync(new URL("../manifest.yml", import.meta.url), "utf8");
const load = (): Manifest => parse(manifestText) as Manifest;
const validate = compileManifestSchema();

function errorsOf(manifest: unknown): string {
  return validate(manifest) ? "" : JSON.stringify(validate.errors, null, 2);
}

describe("manifest.yml", () => {
  it("is valid against Slack's app manifest schema", () => {
    assert.equal(errorsOf(load()), "");
  });

  it("declares what Baton relies on", () => {
    const manifest = load();
    assert.equal(manifest.display_information.name, "Baton");
    assert.equal(manifest.features.bot_user.display_name, "baton");
    assert.equal(manifest.features.bot_user.always_online, true);
    assert.equal(manifest.features.app_home.home_tab_enabled, true);
    assert.equal(manifest.features.app_home.messages_tab_enabled, true);

    const scopes = manifest.oauth_config.scopes.bot;
    for (const scope of ["app_mentions:read", "chat:write", "chat:write.customize", "commands"]) {
      assert.ok(scopes.includes(scope), `missing bot scope ${scope}`);
    }
    assert.equal(new Set(scopes).size, scopes.length, "duplicate scopes");

    const baton = manifest.features.slash_commands.find((c) => c.command === "/baton");
    assert.ok(baton, "missing /baton");
    // Every verb /baton answers (src/slack/words.ts's help) is in the hint Slack shows as one types.
    for (const verb of ["status", "audit", "who", "done", "agents", "help"])
      assert.match(baton.usage_hint ?? "", new RegExp(`\\b${verb}\\b`), `the hint names ${verb}`);

    const events = manifest.settings.event_subscriptions.bot_events;
    const relied = [
      "app_mention",
      "message.channels",
      "message.im",
      "message.mpim",
      "app_home_opened",
    ];
    for (const event of relied) {
      assert.ok(events.includes(event), `missing bot event ${event}`);
    }
    assert.equal(manifest.settings.interactivity.is_enabled, true);
    assert.equal(manifest.settings.socket_mode_enabled, false);
    assert.equal(manifest.settings.token_rotation_enabled, false);

    // Bolt's HTTP receiver serves events, actions and commands on one path.
    const urls = [
      manifest.settings.event_subscriptions.request_url,
      manifest.settings.interactivity.request_url,
      baton.url,
    ];
    assert.deepEqual(new Set(urls), new Set(["https://baton.example.com/slack/events"]));
  });

  it("rejects a broken manifest, naming the broken field", () => {
    type Breakage = [where: string, breakIt: (m: Manifest & Record<string, unknown>) => void];
    const breakages: Breakage[] = [
      ["", (m) => Object.assign(m, { setings: {} })],
      [
        "/features/bot_user/always_online",
        (m) => Object.assign(m.features.bot_user, { always_online: "yes" }),
      ],
      [
        "/features/bot_user",
        (m) => Object.assign(m.features.bot_user, { display_name: undefined }),
      ],
      [
        "/features/slash_commands/0/command",
        (m) => Object.assign(m.features.slash_commands[0] ?? {}, { command: "baton" }),
      ],
      [
        "/display_information/name",
        (m) => Object.assign(m.display_information, { name: "B".repeat(36) }),
      ],
      [
        "/display_information/background_color",
        (m) => Object.assign(m.display_information, { background_color: "#12345z" }),
      ],
      ["/settings/interactivity", (m) => Object.assign(m.settings, { interactivity: {} })],
    ];
    for (const [where, breakIt] of breakages) {
      const manifest = load() as Manifest & Record<string, unknown>;
      breakIt(manifest);
      // The JSON round trip drops the `undefined` that stands for a deleted key.
      assert.equal(
        validate(JSON.parse(JSON.stringify(manifest))),
        false,
        `accepted a break at ${where}`,
      );
      const paths = (validate.errors ?? []).map((error) => error.instancePath);
      assert.ok(paths.includes(where), `no error at "${where}": ${paths.join(", ")}`);
    }
  });
});
