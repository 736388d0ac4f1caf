/**
 * Parsing helpers shared by both sides' configuration: environment values are strings, and a bad one
 * must stop start-up with one line that names the variable and says what would be accepted.
 */
import { z } from "zod";

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** A positive integer of milliseconds (or a count), given as a decimal string. */
export const intFromEnv = (def: number, min = 1) =>
  z
    .string()
    .trim()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`))
    .optional()
    .transform((v) => v ?? def);

/** Parses `env` with `schema`; the first problem becomes a ConfigError naming the variable. */
export function parseEnv<S extends z.ZodTypeAny>(schema: S, env: NodeJS.ProcessEnv): z.infer<S> {
  // Empty strings mean "unset", as in shells where `VAR=` is common.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const result = schema.safeParse(cleaned);
  if (result.success) return result.data;
  const issue = result.error.issues[0]!;
  const name = issue.path.length ? String(issue.path[0]) : "environment";
  const value = issue.path.length ? cleaned[String(issue.path[0])] : undefined;
  throw new ConfigError(`${name}${value !== undefined ? `="${value}"` : ""}: ${issue.message}`);
}
