// Builds the web app into dist/, which `devpynode serve` hands to its Envoy on DEVPYNODE_HTTP_PORT.
// The dev server proxies grpc-web to a running `devpynode serve` (port 8080) so `npm run dev` works too.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // No inline scripts or data: module preloads: the platform's Content-Security-Policy allows neither.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 1024,
  },
  server: {
    proxy: { "/devpynode.": "http://127.0.0.1:8080" },
  },
});
