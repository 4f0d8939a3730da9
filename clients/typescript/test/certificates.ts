// Certificates made at test time with the openssl command: a CA, a server certificate for
// 127.0.0.1 and localhost, and a client certificate, as PEM files.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pair {
  cert: string; // paths
  key: string;
}

export class Authority {
  readonly directory = mkdtempSync(join(tmpdir(), "flowrpc-ts-certs-"));
  readonly cert = join(this.directory, "ca.pem");
  readonly #key = join(this.directory, "ca.key");

  constructor() {
    openssl("req", "-x509", ...newKey(this.#key), "-out", this.cert, "-days", "1",
      "-subj", "/CN=flowrpc test ca",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign");
  }

  /** A certificate and key signed by this CA: for 127.0.0.1 and localhost when `server`. */
  issue(name: string, server: boolean): Pair {
    const pair = { cert: join(this.directory, `${name}.pem`), key: join(this.directory, `${name}.key`) };
    const request = join(this.directory, `${name}.csr`);
    const extensions = join(this.directory, `${name}.ext`);
    writeFileSync(
      extensions,
      server
        ? "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
        : "extendedKeyUsage=clientAuth\n",
    );
    openssl("req", "-new", ...newKey(pair.key), "-out", request, "-subj", `/CN=${name}`);
    openssl("x509", "-req", "-in", request, "-CA", this.cert, "-CAkey", this.#key, "-CAcreateserial",
      "-out", pair.cert, "-days", "1", "-extfile", extensions);
    return pair;
  }

  /** The CA certificate's PEM text. */
  pem(): string {
    return readFileSync(this.cert, "utf8");
  }

  remove(): void {
    rmSync(this.directory, { recursive: true, force: true });
  }
}

function newKey(path: string): string[] {
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", path];
}

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { stdio: ["ignore", "ignore", "pipe"] });
}
