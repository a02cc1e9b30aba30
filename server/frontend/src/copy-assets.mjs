// Copies the stylesheets, icon font and images the bundles need next to them in static/build/
// (esbuild bundles only the scripts). The pages link these files: everything comes from our own
// origin, as the Content-Security-Policy demands (bpmn-font's "embedded" stylesheet inlines the font
// as a data: URL, which it refuses — the pages link bpmn-font/css/bpmn.css and its font files).
import { cpSync, mkdirSync } from "node:fs";

const out = new URL("../../static/build/", import.meta.url);
const modules = new URL("../node_modules/", import.meta.url);
const copies = {
  "bpmn-js/dist/assets/": "",
  "@bpmn-io/properties-panel/dist/assets/properties-panel.css": "properties-panel.css",
  "leaflet/dist/leaflet.css": "leaflet/leaflet.css",
  "leaflet/dist/images/": "leaflet/images/",
};
mkdirSync(out, { recursive: true });
for (const [from, to] of Object.entries(copies)) {
  cpSync(new URL(from, modules), new URL(to, out), { recursive: true });
}
