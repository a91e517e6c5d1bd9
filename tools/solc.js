#!/usr/bin/env node
// A `solc` command-line stand-in over the npm `solc` package (solcjs), so that
// py-solc-x / ape-solidity compile offline. It answers the two forms they use:
//   solc --version
//   solc --standard-json [--base-path P] [--allow-paths A,B] [--include-path P]  < input.json
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

function printVersion() {
  // Same shape as the native binary: py-solc-x parses "Version: X.Y.Z+commit...".
  process.stdout.write('solc, the solidity compiler commandline interface\n');
  process.stdout.write(`Version: ${solc.version()}\n`);
}

function optionValues(args, flag) {
  const values = [];
  args.forEach((arg, i) => {
    if (arg === flag && i + 1 < args.length) values.push(args[i + 1]);
    else if (arg.startsWith(`${flag}=`)) values.push(arg.slice(flag.length + 1));
  });
  return values;
}

function importResolver(roots) {
  return (importPath) => {
    for (const root of roots) {
      const candidate = path.resolve(root, importPath);
      if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
    }
    return { error: `File not found: ${importPath} (searched ${roots.join(', ')})` };
  };
}

function compileStandardJson(args) {
  const input = fs.readFileSync(0, 'utf8');
  const roots = [
    ...optionValues(args, '--base-path'),
    ...optionValues(args, '--include-path'),
    ...optionValues(args, '--allow-paths').flatMap((v) => v.split(',')),
    process.cwd(),
  ].filter(Boolean);
  const output = solc.compile(input, { import: importResolver(roots) });
  process.stdout.write(output);
}

function main() {
  const args = process.argv.slice(2);
  if (args.includes('--version')) return printVersion();
  if (args.includes('--standard-json')) return compileStandardJson(args);
  process.stderr.write('solc.js: only --version and --standard-json are supported\n');
  process.exitCode = 2;
}

main();
