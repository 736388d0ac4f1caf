/**
 * Renders a session's messages as text a chat model reads well: role, time, text, one line per tool
 * call with its status, errors spelled out, and what is waiting for an answer.
 */
import type { Message, Part, PermissionRequest, QuestionRequest } from "@opencode-ai/sdk/v2";
import { describeError } from "./turn.js";

/** Longest tool input excerpt shown on a tool line. */
const TOOL_INPUT_EXCERPT = 80;

export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function toolSummary(part: Extract<Part, { type: "tool" }>): string {
  const state = part.state;
  const input = "input" in state && state.input ? state.input : {};
  const hint = typeof input === "object" && input ? String((input as Record<string, unknown>).command ?? (input as Record<string, unknown>).filePath ?? (input as Record<string, unknown>).pattern ?? "") : "";
  const excerpt = hint.length > TOOL_INPUT_EXCERPT ? `${hint.slice(0, TOOL_INPUT_EXCERPT)}…` : hint;
  const error = state.status === "error" && "error" in state ? `: ${state.error}` : "";
  return `[tool: ${part.tool}${excerpt ? ` ${excerpt}` : ""} → ${state.status}${error}]`;
}

export function formatMessage(m: { info: Message; parts: Part[] }): string {
  const lines: string[] = [];
  const head = `[${formatTime(m.info.time.created)}] ${m.info.role}`;
  const body: string[] = [];
  for (const p of m.parts) {
    if (p.type === "text" && !p.synthetic && !p.ignored && p.text.trim()) body.push(p.text.trim());
    else if (p.type === "tool") body.push(toolSummary(p));
    else if (p.type === "file") body.push(`[file: ${p.filename ?? p.url}]`);
    else if (p.type === "subtask") body.push(`[subtask: ${p.description}]`);
  }
  if (m.info.role === "assistant" && m.info.error) body.push(`[error: ${describeError(m.info.error)}]`);
  lines.push(body.length ? `${head}: ${body.join("\n")}` : `${head}: (no text)`);
  return lines.join("\n");
}

export function formatPending(permissions: PermissionRequest[], questions: QuestionRequest[]): string[] {
  return [
    ...permissions.map((p) => `Waiting for permission: ${p.permission}${p.patterns.length ? ` (${p.patterns.join(", ")})` : ""}, request ${p.id}`),
    ...questions.map((q) => `Waiting for an answer: ${q.questions.map((x) => x.question).join(" / ")}, request ${q.id}`),
  ];
}
