/** One typed client per service, all over the authenticated grpc-web transport. */
import { createClient } from "@connectrpc/connect";
import { AIRouterService } from "../gen/devpynode/ai/v1/ai_pb";
import { ModelAdminService } from "../gen/devpynode/ai/v1/models_pb";
import { ApiKeyService } from "../gen/devpynode/auth/v1/api_keys_pb";
import { AuthService, UserAdminService } from "../gen/devpynode/auth/v1/auth_pb";
import { ChatService } from "../gen/devpynode/chat/v1/chat_pb";
import { FileService } from "../gen/devpynode/files/v1/files_pb";
import { transport } from "./transport";

export const auth = createClient(AuthService, transport);
export const admin = createClient(UserAdminService, transport);
export const chat = createClient(ChatService, transport);
export const files = createClient(FileService, transport);
export const ai = createClient(AIRouterService, transport);
export const modelAdmin = createClient(ModelAdminService, transport);
export const apiKeys = createClient(ApiKeyService, transport);
