/**
 * The app's reads through TanStack Query: one QueryClient, the query keys, and the shared query definitions.
 *
 * Keys start with the service's area so a mutation can invalidate everything it touches with a prefix. Lists
 * that change under the user (conversations, invitations) poll while the tab is visible; every read refetches
 * when the tab comes back. The cache is emptied when the signed-in user changes (App.tsx), so nobody sees the
 * previous user's lists. The chat's event stream is not a query: it lives in chat/store.ts.
 */
import { QueryClient, queryOptions } from "@tanstack/react-query";
import { Code, ConnectError } from "@connectrpc/connect";
import { ai, auth, chat } from "./clients";

/** How often the lists that others change (new conversations, invitations) are read again while visible. */
export const POLL_MS = 15_000;

export const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      // Expired tokens are already retried by the transport; only a dropped connection is worth another try.
      retry: (failures, error) => failures < 2 && ConnectError.from(error).code === Code.Unavailable,
      refetchOnWindowFocus: true,
    },
  },
});

export const keys = {
  me: ["auth", "me"] as const,
  sessions: ["auth", "sessions"] as const,
  apiKeys: ["auth", "api-keys"] as const,
  userApiKeys: (userId: string) => ["admin", "api-keys", userId] as const,
  usageByKey: ["ai", "usage", "by-key"] as const,
  signInProviders: ["auth", "sign-in-providers"] as const,
  identities: ["auth", "identities"] as const,
  users: ["admin", "users"] as const,
  audit: (kind: string) => ["admin", "audit", kind] as const,
  models: ["ai", "models"] as const,
  providerModels: ["admin", "provider-models"] as const,
  usage: ["ai", "usage"] as const,
  conversations: ["chat", "conversations"] as const,
  invitations: ["chat", "invitations"] as const,
  files: ["files", "list"] as const,
  descriptors: ["docs", "descriptors"] as const,
  openapi: ["docs", "openapi"] as const,
};

export const meQuery = queryOptions({
  queryKey: keys.me,
  queryFn: async () => (await auth.getCurrentUser({})).user ?? null,
});

/** The models on offer change with the deployment, not while the page is open: read once per page load, and
 * again every MODELS_RETRY_MS while one is unavailable (the local model loads after the server starts serving;
 * an Ollama may be started later), so it becomes choosable without a reload. */
const MODELS_RETRY_MS = 10_000;
export const modelsQuery = queryOptions({
  queryKey: keys.models,
  queryFn: async () => (await ai.listModels({ pageSize: 100 })).models,
  staleTime: Infinity,
  refetchInterval: (query) => (query.state.data?.some((m) => !m.available) ? MODELS_RETRY_MS : false),
});

export const conversationsQuery = queryOptions({
  queryKey: keys.conversations,
  queryFn: async () => (await chat.listConversations({ pageSize: 100 })).conversations,
  refetchInterval: POLL_MS,
});

export const invitationsQuery = queryOptions({
  queryKey: keys.invitations,
  queryFn: async () => (await chat.listInvitations({ pageSize: 100 })).invitations,
  refetchInterval: POLL_MS,
});
