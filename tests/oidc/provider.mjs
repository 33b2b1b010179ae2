// A real OpenID Provider (panva/oidc-provider) for the worklist sign-on tests only.
// Listens on 127.0.0.1:$PORT with one confidential client ($CLIENT_ID/$CLIENT_SECRET,
// redirect URI $REDIRECT_URI), PKCE required. Its own small login page (no external fonts
// or scripts, so test traffic stays on loopback); consent is implied, as for a hospital's
// first-party applications. Test accounts and their groups are below; the password of each
// is "test-password". Prints "READY <issuer>" once it listens.
import http from "node:http";
import { URLSearchParams } from "node:url";
import Provider from "oidc-provider";

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const PASSWORD = "test-password";
const ACCOUNTS = {
  "alice.admin": ["dxsafety-admin", "staff"],
  "rita.reviewer": ["dxsafety-reviewer", "staff"],
  "victor.visitor": ["staff"],
};

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    grant_types: ["authorization_code"],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  }],
  pkce: { required: () => true },
  claims: {
    openid: ["sub"],
    profile: ["preferred_username", "name"],
    email: ["email"],
    groups: ["groups"],
  },
  scopes: ["openid", "profile", "email", "groups"],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ["test-only-cookie-key-not-secret"] },
  async findAccount(_ctx, id) {
    if (!(id in ACCOUNTS)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id, email: `${id}@hospital.test`,
                 groups: ACCOUNTS[id] };
      },
    };
  },
});

function page(res, status, body) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8" });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Hospital sign-in</title></head><body>${body}</body></html>`);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return page(res, 400, "<p>interaction mismatch</p>");
  const prompt = details.prompt.name;
  if (prompt === "login" && req.method === "POST" && action === "login") {
    const form = await readForm(req);
    const login = form.get("login") || "";
    if (!(login in ACCOUNTS) || form.get("password") !== PASSWORD) {
      return page(res, 401, `<h1>Hospital sign-in</h1><p id="error">Unknown account or wrong password.</p>${loginForm(uid)}`);
    }
    return provider.interactionFinished(req, res, { login: { accountId: login } },
                                        { mergeWithLastSubmission: false });
  }
  if (prompt === "login") return page(res, 200, `<h1>Hospital sign-in</h1>${loginForm(uid)}`);
  if (prompt === "consent") {
    const { accountId } = details.session;
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId, clientId: details.params.client_id });
    const missing = details.prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(" "));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } },
                                        { mergeWithLastSubmission: true });
  }
  return page(res, 400, `<p>unsupported prompt ${escapeHtml(prompt)}</p>`);
}

function loginForm(uid) {
  return `<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label>Hospital user name <input name="login" autocomplete="username" required></label>
<label>Password <input name="password" type="password" required></label>
<button type="submit">Sign in</button></form>`;
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login))?/.exec(req.url || "");
  if (!match) return callback(req, res);
  interaction(req, res, match[1], match[2]).catch((err) => {
    page(res, 500, `<p>${escapeHtml(err.message)}</p>`);
  });
});
server.listen(port, "127.0.0.1", () => {
  process.stdout.write(`READY ${issuer}\n`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
