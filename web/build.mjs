// Builds dist/: index.html plus one minified, content-hashed JS and CSS file.
import { build } from "esbuild";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { gzipSync } from "node:zlib";
import path from "node:path";

const dist = "dist";
await rm(dist, { recursive: true, force: true });

const result = await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  outdir: path.join(dist, "assets"),
  entryNames: "[name]-[hash]",
  metafile: true,
  legalComments: "none",
  logLevel: "warning",
});

// Each output's path relative to dist/, by extension.
const outputs = Object.keys(result.metafile.outputs).map((file) => path.relative(dist, file));
const pick = (ext) => {
  const found = outputs.filter((file) => file.endsWith(ext));
  if (found.length !== 1) throw new Error(`expected one ${ext} output, got ${found}`);
  return found[0];
};
const js = pick(".js");
const css = pick(".css");

const html = (await readFile("index.html", "utf8")).replace("%JS%", `/${js}`).replace("%CSS%", `/${css}`);
await mkdir(dist, { recursive: true });
await writeFile(path.join(dist, "index.html"), html);

for (const file of [js, css]) {
  const bytes = await readFile(path.join(dist, file));
  console.log(`${file}: ${bytes.length} bytes, ${gzipSync(bytes, { level: 9 }).length} gzipped`);
}
