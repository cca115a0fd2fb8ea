// Known-answer DPoP proofs from an independent implementation: panva's `dpop` npm package.
//
// tests/core/fixtures/panva_dpop.json is this script's output, committed so that CI never needs the
// npm registry; tests/core/test_interop_panva.py verifies the proofs under a frozen clock. Regenerate
// (Node >= 20; `dpop` is installed in a throw-away directory, never in this repository):
//
//   repo=$(pwd) && cd "$(mktemp -d)" && npm install --no-save dpop@2.1.2 && \
//     node "$repo/scripts/panva_dpop_fixtures.mjs" > "$repo/tests/core/fixtures/panva_dpop.json"
//
// `dpop` is resolved from the current directory, so run the script where it was installed.
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { readFileSync } from 'node:fs'

const require = createRequire(`${process.cwd()}/`)
const entry = require.resolve('dpop')
const dpop = await import(pathToFileURL(entry).href)
const version = JSON.parse(readFileSync(require.resolve('dpop/package.json'), 'utf8')).version

// A token string with characters the ath hash must take as they are (RFC 9449 §4.2: ASCII, token68).
const accessToken = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU'
const cases = [
  // Ed25519 is signed with the fully-specified alg name "Ed25519" (RFC 9864), which is why this file exists.
  { alg: 'Ed25519', htm: 'GET', htu: 'https://api.example/orders', accessToken },
  { alg: 'Ed25519', htm: 'POST', htu: 'https://as.example/token', nonce: 'eyJ7S_zG.eyJH0-Z.HX4w-7v' },
  { alg: 'ES256', htm: 'GET', htu: 'https://api.example/orders', accessToken },
  { alg: 'PS256', htm: 'PUT', htu: 'https://api.example/orders/1', accessToken },
  { alg: 'RS256', htm: 'DELETE', htu: 'https://api.example/orders/1', accessToken },
]

const proofs = []
for (const c of cases) {
  const keypair = await dpop.generateKeyPair(c.alg, { extractable: false })
  const proof = await dpop.generateProof(keypair, c.htu, c.htm, c.nonce, c.accessToken)
  const publicJwk = await crypto.subtle.exportKey('jwk', keypair.publicKey)
  for (const member of ['key_ops', 'ext', 'alg']) delete publicJwk[member]
  const claims = JSON.parse(Buffer.from(proof.split('.')[1], 'base64url'))
  proofs.push({ alg: c.alg, htm: c.htm, htu: c.htu, nonce: c.nonce ?? null, access_token: c.accessToken ?? null,
                iat: claims.iat, public_jwk: publicJwk, proof })
}
process.stdout.write(JSON.stringify({
  generator: `dpop@${version} (https://github.com/panva/dpop) on node ${process.version}`,
  proofs,
}, null, 2) + '\n')
