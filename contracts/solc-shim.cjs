#!/usr/bin/env node
// A solc command line for py-solc-x, backed by the pinned npm `solc` (solc-js).
// It answers the two calls py-solc-x makes: `--version` and `--standard-json` (input on
// stdin). Plain `solcjs` prints a line before its JSON, which py-solc-x cannot parse, and has
// no import callback for node_modules; this shim prints only the JSON and resolves imports
// from the repository root and its node_modules.
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const repoRoot = path.resolve(__dirname, "..");
const searchRoots = [repoRoot, path.join(repoRoot, "node_modules")];

function findImports(importPath) {
  for (const root of searchRoots) {
    const candidate = path.resolve(root, importPath);
    if (!candidate.startsWith(root + path.sep)) continue; // never read outside the repo
    if (fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `File not found under ${searchRoots.join(" or ")}: ${importPath}` };
}

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(`solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`);
} else if (args.includes("--standard-json")) {
  const input = fs.readFileSync(0, "utf8");
  process.stdout.write(solc.compile(input, { import: findImports }));
} else {
  process.stderr.write("solc-shim: only --version and --standard-json are supported\n");
  process.exit(2);
}
