// A real OpenID Connect provider on loopback for the browser tests (npm `oidc-provider`).
// Environment: PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, NODE_MODULES (where npm put it),
// TOKEN_TTL (seconds id-tokens and access tokens live, default 3600) and OUTAGE_FILE (while that
// file exists the token endpoint answers 503, as a provider that is down).
// Its built-in "dev interactions" log in any login/password and ask for consent; the account's claims
// are SLICES-shaped. It issues refresh tokens (offline_access), rotates them at every use and
// revokes them on request; each successful token request prints "grant <grant_type>".
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const { PORT, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, NODE_MODULES, OUTAGE_FILE } = process.env;
const TOKEN_TTL = Number(process.env.TOKEN_TTL || 3600);
const { default: Provider } = await import(pathToFileURL(join(NODE_MODULES, "oidc-provider/lib/index.js")).href);
const signingKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" });

const provider = new Provider(`http://127.0.0.1:${PORT}`, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ["authorization_code", "refresh_token"],
    response_types: ["code"],
    id_token_signed_response_alg: "ES256",
  }],
  jwks: { keys: [{ ...signingKey, kid: "test-es256", use: "sig", alg: "ES256" }] },
  cookies: { keys: [randomBytes(32).toString("hex")] },
  pkce: { required: () => true },
  conformIdTokenClaims: false,
  features: { revocation: { enabled: true } },
  rotateRefreshToken: true,
  ttl: { IdToken: TOKEN_TTL, AccessToken: TOKEN_TTL },
  claims: { openid: ["sub"], profile: ["preferred_username", "given_name", "family_name"], email: ["email"] },
  findAccount: async (_ctx, sub) => ({
    accountId: sub,
    claims: async () => ({
      sub, preferred_username: sub, given_name: "Olivia", family_name: "Test", email: `${sub}@example.org`,
    }),
  }),
});
provider.use(async (ctx, next) => {
  if (ctx.path === "/token" && OUTAGE_FILE && existsSync(OUTAGE_FILE)) {
    ctx.status = 503;
    ctx.body = "down for the test";
    return;
  }
  await next();
});
provider.on("grant.success", (ctx) => console.log(`grant ${ctx.oidc.params.grant_type}`));
provider.listen(Number(PORT), "127.0.0.1", () => console.log(`oidc-provider ready on ${PORT}`));
