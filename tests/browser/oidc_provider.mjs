// A real OpenID Connect provider on loopback for the browser tests (npm `oidc-provider`).
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, NODE_MODULES (where npm put it). Its built-in "dev interactions"
// log in any login/password and ask for consent; the account's claims are SLICES-shaped.
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const { PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, NODE_MODULES } = process.env;
const { default: Provider } = await import(pathToFileURL(join(NODE_MODULES, "oidc-provider/lib/index.js")).href);
const signingKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    id_token_signed_response_alg: "ES256",
  }],
  jwks: { keys: [{ ...signingKey, kid: "test-es256", use: "sig", alg: "ES256" }] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  claims: { openid: ["sub"], profile: ["preferred_username", "given_name", "family_name"], email: ["email"] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub, preferred_username: sub, given_name: "Olivia", family_name: "Test", email: `${sub}@example.org`,
    }),
  }),
});
provider.listen(Number(PORT), "127.0.0.1", () => console.log(`oidc-provider ready on ${PORT}`));
