// The package exports every generated file, so a new proto file cannot go missing from it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const src = fileURLToPath(new URL("../../src/", import.meta.url));

test("index.ts re-exports every generated file", () => {
  const index = readFileSync(`${src}index.ts`, "utf8");
  const generated = readdirSync(`${src}gen/flowrpc/v1`).filter((name) => name.endsWith("_pb.ts"));
  assert.ok(generated.length > 10);
  const missing = generated.filter(
    (name) => !index.includes(`export * from "./gen/flowrpc/v1/${name.replace(/\.ts$/, ".js")}";`),
  );
  assert.deepEqual(missing, [], "add these to src/index.ts");
});
