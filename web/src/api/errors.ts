/** Turns a failed call into words for the user, using the google.rpc details the platform attaches. */
import { BadRequestSchema, QuotaFailureSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb";
import { Code, ConnectError } from "@connectrpc/connect";

export function describeError(error: unknown): string {
  const failure = ConnectError.from(error);
  if (failure.code === Code.Canceled) return "Cancelled.";
  const parts: string[] = [failure.rawMessage || Code[failure.code]];
  for (const bad of failure.findDetails(BadRequestSchema)) {
    for (const violation of bad.fieldViolations) parts.push(`${violation.field}: ${violation.description}`);
  }
  for (const retry of failure.findDetails(RetryInfoSchema)) {
    const seconds = Number(retry.retryDelay?.seconds ?? 0n);
    if (seconds > 0) parts.push(`try again in ${seconds} s`);
  }
  for (const quota of failure.findDetails(QuotaFailureSchema)) {
    for (const violation of quota.violations) if (violation.description) parts.push(violation.description);
  }
  return [...new Set(parts)].join(" · ");
}

export function isCode(error: unknown, code: Code): boolean {
  return ConnectError.from(error).code === code;
}
