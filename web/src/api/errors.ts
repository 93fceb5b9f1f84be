/** Turns a failed call into words for the user, using the google.rpc details the platform attaches. */
import { BadRequestSchema, QuotaFailureSchema, RetryInfoSchema } from "../gen/google/rpc/error_details_pb";
import { Code, ConnectError } from "@connectrpc/connect";

/** Words for failures that come without a message of the server's (a dropped connection, a proxy's answer). */
const PLAIN: Partial<Record<Code, string>> = {
  [Code.Unavailable]: "The server cannot be reached; check the connection and try again.",
  [Code.DeadlineExceeded]: "The server took too long to answer; try again.",
  [Code.Internal]: "Something went wrong on the server; try again, and tell the administrator if it keeps happening.",
  [Code.Unknown]: "Something went wrong; try again.",
  [Code.Unauthenticated]: "Your session has ended; sign in again.",
  [Code.PermissionDenied]: "You are not allowed to do that.",
  [Code.ResourceExhausted]: "Too many requests; wait a moment and try again.",
};

export function describeError(error: unknown): string {
  const failure = ConnectError.from(error);
  if (failure.code === Code.Canceled) return "Cancelled.";
  const message = failure.rawMessage.trim() || PLAIN[failure.code] || Code[failure.code];
  const parts: string[] = [message];
  // A field violation the message already says in its own words is not said twice.
  const said = (words: string) => message.toLowerCase().includes(words.toLowerCase());
  for (const bad of failure.findDetails(BadRequestSchema)) {
    for (const violation of bad.fieldViolations) {
      // Nor one whose field the message already names in words ("the current password" for current_password).
      if (!said(violation.description) && !said(violation.field.replaceAll("_", " "))) parts.push(`${violation.field}: ${violation.description}`);
    }
  }
  for (const retry of failure.findDetails(RetryInfoSchema)) {
    const seconds = Number(retry.retryDelay?.seconds ?? 0n);
    if (seconds > 0) parts.push(`try again in ${seconds} s`);
  }
  for (const quota of failure.findDetails(QuotaFailureSchema)) {
    for (const violation of quota.violations) if (violation.description && !said(violation.description)) parts.push(violation.description);
  }
  return [...new Set(parts)].join(" · ");
}

export function isCode(error: unknown, code: Code): boolean {
  return ConnectError.from(error).code === code;
}
