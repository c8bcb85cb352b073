import type { AgentConfig, AgentsFile } from "../../config/agents-schema.ts";

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
  /** "@Baton billing: ..." names an agent first; matches an id or a display name. */
  named(word: string): Agent | undefined;
  /** How an agent speaks; one removed from the agents file since keeps its id and a neutral icon. */
  persona(id: string): { name: string; icon: string };
}

/** How "@Baton <word>:" compares a word with an agent's id or name: letters and digits only. */
export const normalise = (text: string) => text.toLowerCase().replace(/[^a-z0-9]+/g, "");

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
    named(word) {
      const key = normalise(word);
      if (!key) return undefined;
      return agents.find((a) => normalise(a.id) === key || normalise(a.name) === key);
    },
  };
}
