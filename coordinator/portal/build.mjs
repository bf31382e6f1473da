// Bundle the portal's script with its npm dependencies (pinned in package-lock.json) into one file
// the coordinator serves: `npm run build:portal` writes coordinator/portal/static/portal.js, which is
// committed; `npm run build:portal -- --out FILE` writes elsewhere (the tests compare the two).
// The same sources and esbuild version give the same bytes. The file opens with the name, version
// and licence of every npm package bundled into it.

import { build } from "esbuild";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..", "..");
const at = process.argv.indexOf("--out");
const outfile = at >= 0 ? path.resolve(process.argv[at + 1]) : path.join(here, "static", "portal.js");

const result = await build({
  entryPoints: [path.join(here, "src", "main.js")],
  outfile,
  write: false,
  metafile: true,
  bundle: true,
  format: "iife",
  platform: "browser",
  target: ["chrome114", "firefox135", "safari18"],
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  sourcemap: false,
  logLevel: "warning",
});

// node_modules/<name>/... or node_modules/@scope/<name>/... -> the package's name, for each file of
// which something is left in the bundle after tree shaking.
const [output] = Object.values(result.metafile.outputs);
const packages = new Set();
for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
  if (bytesInOutput === 0) continue;
  const parts = input.split("/");
  const at = parts.lastIndexOf("node_modules");
  if (at >= 0) packages.add(parts[at + 1].startsWith("@") ? `${parts[at + 1]}/${parts[at + 2]}` : parts[at + 1]);
}
const listed = [...packages].sort().map((name) => {
  const meta = JSON.parse(readFileSync(path.join(root, "node_modules", name, "package.json"), "utf8"));
  return ` *   ${name} ${meta.version} (${meta.license})`;
});
const banner = ["/* MeTAI exchange portal: built by `npm run build:portal` from coordinator/portal/src; do not edit.",
  " * Bundled npm packages (their licence texts are in each package):", ...listed, " */", ""].join("\n");
writeFileSync(outfile, banner + result.outputFiles[0].text);
