import type { ModelPort, ModelReply, ModelRequest } from "../../src/core/model.ts";
import { TransientError } from "../../src/errors.ts";
import { agentIdOf, type ChatRequest, promptChars, type Script } from "./model-server.ts";

/**
 * The model port played from a script in-process: no HTTP, no client. Takes the same scripts as the
 * OpenAI-compatible model server, so a scenario runs either way. It measures Baton without the
 * model's transport; the model server measures it with the real openai client.
 */
export function scriptedModel(script: Script): ModelPort & { calls: number } {
  let callIndex = 0;
  const perAgent = new Map<string, number>();
  const model = {
    calls: 0,
    async complete(request: ModelRequest): Promise<ModelReply> {
      const body = {
        model: request.model,
        prompt_cache_key: request.agentId,
        messages: request.messages,
        tools: request.tools,
      } as unknown as ChatRequest;
      const agentId = agentIdOf(body);
      const agentCallIndex = perAgent.get(agentId ?? "") ?? 0;
      perAgent.set(agentId ?? "", agentCallIndex + 1);
      model.calls++;
      const reply = await script(body, { agentId, callIndex: callIndex++, agentCallIndex });
      if ("raw" in reply) throw new Error("a raw HTTP body has no meaning without HTTP");
      if ("error" in reply)
        throw new TransientError(`scripted model error ${reply.status}: ${reply.error}`);
      const toolCalls = ("toolCalls" in reply ? reply.toolCalls : []).map((c, i) => ({
        id: c.id ?? `call_${callIndex}_${i}`,
        name: c.name,
        arguments: typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
      }));
      const content = reply.content ?? null;
      return {
        content,
        toolCalls,
        usage: {
          promptTokens: Math.ceil(promptChars(body) / 4),
          completionTokens: Math.max(1, Math.ceil((content ?? "").length / 4)),
        },
        model: request.model,
      };
    },
  };
  return model;
}
