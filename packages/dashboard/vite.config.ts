// Builds the console into the helio-proxy package (git-ignored; the wheel's hatch hook and ./dev run this).
import { fileURLToPath } from "node:url";
import preact from "@preact/preset-vite";
import { defineConfig } from "vite";

const outDir = fileURLToPath(new URL("../proxy/src/helio_proxy/console/static", import.meta.url));

export default defineConfig({
  plugins: [preact()],
  base: "/",
  build: {
    outDir,
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 300,
  },
  server: {
    proxy: { "/api": "http://127.0.0.1:3100" },
  },
});
