// The GUI is served by cargobayd at /ui/; the build goes straight into the Python
// package (src/cargobay/daemon/webui/dist) so an editable or wheel install finds it.
// `npm run dev` proxies the API to a daemon listening on TCP (CARGOBAY_API, with the
// token as a cookie set by opening /ui/?token=... on the daemon first).
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: {
    outDir: "../src/cargobay/daemon/webui/dist",
    emptyOutDir: true,
    chunkSizeWarningLimit: 600,
  },
  server: {
    proxy: { "/v1": process.env.CARGOBAY_API ?? "http://127.0.0.1:8765" },
  },
});
