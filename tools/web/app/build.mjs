// Builds the web app into dist/ (committed; courierd embeds it): esbuild
// bundles src/app.ts with the SDK's sources into one minified ES module,
// index.html and the stylesheet are copied. The output is deterministic, so
// `node build.mjs --check` fails when dist/ differs from a fresh build (the
// browser test runs it, so a stale dist/ cannot pass CI).
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');
const out = check ? fs.mkdtempSync(path.join(os.tmpdir(), 'courier-app-')) : path.join(here, 'dist');
fs.mkdirSync(out, { recursive: true });

await esbuild.build({
  entryPoints: [path.join(here, 'src/app.ts')],
  bundle: true,
  minify: true,
  format: 'esm',
  platform: 'browser',
  target: ['es2022'],
  // Reached only in Node (the SDK's `ws` fallback and file cursor store).
  external: ['ws', 'node:*'],
  legalComments: 'none',
  charset: 'utf8',
  outfile: path.join(out, 'app.js'),
  logLevel: 'warning',
});
fs.copyFileSync(path.join(here, 'src/index.html'), path.join(out, 'index.html'));
fs.copyFileSync(path.join(here, 'src/style.css'), path.join(out, 'app.css'));

if (check) {
  const stale = ['index.html', 'app.js', 'app.css'].filter((f) => {
    const committed = path.join(here, 'dist', f);
    return !fs.existsSync(committed) || !fs.readFileSync(committed).equals(fs.readFileSync(path.join(out, f)));
  });
  fs.rmSync(out, { recursive: true, force: true });
  if (stale.length > 0) {
    console.error(`build-web: tools/web/app/dist is stale (${stale.join(', ')}); run scripts/build-web and commit`);
    process.exit(1);
  }
  console.log('build-web: tools/web/app/dist matches the sources');
} else {
  console.log(`build-web: wrote ${path.relative(process.cwd(), out) || out}`);
}
