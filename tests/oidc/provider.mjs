// A real OpenID Connect provider on loopback for kmeweb's tests: node's certified
// `oidc-provider` (version pinned in package.json and package-lock.json) with one client,
// `kmeweb`, its own login and consent pages, and control endpoints under /__test/ that let a
// test change the accounts, refuse a user and spoil the next ID token.
//
//   node tests/oidc/provider.mjs [--port 0] [--key-file PATH] [--exit-with-stdin] [--verbose]
//
// --port       port on 127.0.0.1 (0, the default, picks a free one); the issuer is
//              http://127.0.0.1:PORT. Env: OIDC_PORT.
// --key-file   the RSA signing key as a private JWK; created when missing, so starting again
//              with the same file keeps the key and with a new path rotates it (a new `kid` in
//              /jwks). Without it every start has a new key. Env: OIDC_KEY_FILE.
// --exit-with-stdin  exit when stdin closes (the test fixture's pipe: a killed test run
//              leaves no provider behind).
//
// When listening it prints one JSON line to stdout, {"issuer": ..., "kid": ...}, and nothing
// else there afterwards; warnings and errors go to stderr.
//
// Control endpoints (JSON bodies; answered on loopback only):
//   POST /__test/reset      {accounts?: [...]}  forget accounts, refusals, misbehaviour and
//                           every session, grant and code
//   PUT  /__test/accounts   [{login, password, email, name, groups, email_verified?, sub?}]
//   PUT  /__test/refused    ["login", ...]  users refused at the authorization step: the
//                           browser returns to the redirect_uri with error=access_denied
//   POST /__test/misbehave  {mode}  one-shot for the next token response: tamper, expired,
//                           wrong_aud, wrong_iss, wrong_nonce, alg_none
//   GET  /__test/state      what is set now, with the signing key's kid

import { createPrivateKey, createHash, generateKeyPairSync, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const CLIENT_ID = 'kmeweb';
const CLIENT_SECRET = 'kmeweb-test-secret';
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);
const MODES = new Set(['tamper', 'expired', 'wrong_aud', 'wrong_iss', 'wrong_nonce', 'alg_none']);

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.OIDC_PORT || '0' },
    'key-file': { type: 'string', default: process.env.OIDC_KEY_FILE || '' },
    'exit-with-stdin': { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});

// What the tests control; every request reads it afresh.
const state = { accounts: new Map(), refused: new Set(), misbehave: null };

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

// RFC 7638 thumbprint: a kid that changes exactly when the key does.
function thumbprint({ e, kty, n }) {
  return createHash('sha256').update(JSON.stringify({ e, kty, n })).digest('base64url');
}

function signingKey(path) {
  if (path && existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const key = { ...jwk, kid: thumbprint(jwk), alg: 'RS256', use: 'sig' };
  if (path) writeFileSync(path, JSON.stringify(key), { mode: 0o600 });
  return key;
}

const KEY = signingKey(args['key-file']);
const PRIVATE_KEY = createPrivateKey({ key: KEY, format: 'jwk' });

function account(input) {
  for (const field of ['login', 'password', 'email', 'name']) {
    if (typeof input[field] !== 'string' || !input[field]) {
      throw new Error(`account needs ${field}`);
    }
  }
  if (!Array.isArray(input.groups)) throw new Error('account needs groups (a list)');
  return {
    login: input.login,
    password: input.password,
    sub: input.sub || input.login,
    email: input.email,
    email_verified: input.email_verified !== false,
    name: input.name,
    groups: input.groups.map(String),
  };
}

function setAccounts(list) {
  const accounts = list.map(account);
  state.accounts = new Map(accounts.map((a) => [a.sub, a]));
}

function byLogin(login) {
  return [...state.accounts.values()].find((a) => a.login === login);
}

function isRefused(sub) {
  const found = state.accounts.get(sub);
  return !!found && state.refused.has(found.login);
}

// An in-memory adapter the control API can empty (the package's own one is module-private).
const storage = new Map();
class MemoryAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    storage.set(this.key(id), { payload, expires: Date.now() + expiresIn * 1000 });
    if (this.model === 'Session') storage.set(`sessionUid:${payload.uid}`, { payload: id });
  }

  async find(id) {
    const entry = storage.get(this.key(id));
    if (!entry || entry.expires < Date.now()) return undefined;
    return entry.payload;
  }

  async findByUid(uid) {
    const id = storage.get(`sessionUid:${uid}`)?.payload;
    return id === undefined ? undefined : this.find(id);
  }

  async findByUserCode() {
    return undefined;
  }

  async consume(id) {
    const entry = storage.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    storage.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    for (const [key, entry] of storage) {
      if (entry.payload?.grantId === grantId) storage.delete(key);
    }
  }
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// Pages pass axe-core (kmeweb's browser tests check every page they visit).
function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)} · Test identity provider</title>
<style>
body{font-family:system-ui,sans-serif;color:#111;background:#fff;margin:0}
main{max-width:24rem;margin:3rem auto;padding:0 1rem}
label{display:block;margin-top:1rem;font-weight:600}
input{box-sizing:border-box;width:100%;padding:.5rem;font-size:1rem;border:1px solid #555}
button{margin:1rem .5rem 0 0;padding:.5rem 1rem;font-size:1rem;border:1px solid #1f4fa8;
  background:#1f4fa8;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1f4fa8}
.error{color:#a00000;font-weight:600}
</style>
</head>
<body>
<main>
<p>Test identity provider</p>
<h1>${escape(title)}</h1>
${body}
</main>
</body>
</html>`;
}

function loginPage(uid, clientName, login = '', error = '') {
  const message = error ? `<p class="error" role="alert">${escape(error)}</p>` : '';
  return page('Sign in', `<p>to continue to ${escape(clientName)}</p>
${message}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
<label for="login">Login</label>
<input id="login" name="login" value="${escape(login)}" required autofocus>
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Sign in</button>
</form>`);
}

function consentPage(uid, clientName, account, scopes) {
  const items = scopes.map((s) => `<li>${escape(s)}</li>`).join('');
  return page(`Allow ${clientName}`, `<p>Signed in as ${escape(account.email)}.
${escape(clientName)} asks to read:</p>
<ul>${items}</ul>
<form method="post" action="/interaction/${escape(uid)}/consent">
<button type="submit">Continue</button>
<button type="submit" class="secondary" name="cancel" value="yes">Cancel</button>
</form>`);
}

const REFUSAL = {
  error: 'access_denied',
  error_description: 'this identity provider does not let the user sign in to kmeweb',
};

const AUTO_SIGN_OUT = `<script>
const yes = document.querySelector("button[name=logout]");
document.getElementById("op.logoutForm").requestSubmit(yes);
</script>`;

function logoutSource(ctx, form) {
  // With a valid id_token_hint the RP has proven who signs out: like Keycloak, end the session
  // without asking (the form posts itself). Without one, the user confirms.
  const hinted = !!ctx.oidc.entities.IdTokenHint;
  ctx.body = page('Sign out', `<p>Sign out of the test identity provider?</p>
${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes">Yes, sign me out</button>
<button type="submit" form="op.logoutForm" class="secondary">No, stay signed in</button>
${hinted ? AUTO_SIGN_OUT : ''}`);
}

function postLogoutSuccessSource(ctx) {
  ctx.body = page('Signed out', '<p>You have signed out of the test identity provider.</p>');
}

function renderError(ctx, out) {
  ctx.type = 'html';
  const rows = Object.entries(out)
    .map(([k, v]) => `<dt>${escape(k)}</dt><dd>${escape(v)}</dd>`)
    .join('');
  ctx.body = page('Something went wrong', `<dl>${rows}</dl>`);
}

// Claims change after signing, always re-signed with the provider's own key unless `tamper`.
function misbehave(idToken, mode, issuer) {
  const [header, payload, signature] = idToken.split('.');
  const claims = JSON.parse(Buffer.from(payload, 'base64url'));
  const now = Math.floor(Date.now() / 1000);
  const resign = (changed, head = header) => {
    const input = `${head}.${b64url(JSON.stringify(changed))}`;
    return `${input}.${sign('sha256', Buffer.from(input), PRIVATE_KEY).toString('base64url')}`;
  };
  switch (mode) {
    case 'tamper': {
      // the claims an attacker would change, under the original signature
      const forged = { ...claims, email: 'mallory@evil.example' };
      return `${header}.${b64url(JSON.stringify(forged))}.${signature}`;
    }
    case 'expired':
      return resign({ ...claims, iat: now - 7200, auth_time: now - 7200, exp: now - 3600 });
    case 'wrong_aud':
      return resign({ ...claims, aud: 'someone-else' });
    case 'wrong_iss':
      return resign({ ...claims, iss: `${issuer}/impostor` });
    case 'wrong_nonce':
      return resign({ ...claims, nonce: 'not-the-nonce-you-sent' });
    case 'alg_none': {
      const head = b64url(JSON.stringify({ alg: 'none', typ: 'JWT' }));
      return `${head}.${payload}.`;
    }
    default:
      throw new Error(`unknown misbehaviour ${mode}`);
  }
}

function isLoopback(uri) {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
  } catch {
    return false;
  }
}

function buildProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: MemoryAdapter,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        client_name: 'kmeweb',
        redirect_uris: [`${issuer}/unused-callback`],
        post_logout_redirect_uris: [`${issuer}/unused-after-logout`],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        // client_secret_post is accepted too: oidc-provider takes either secret method.
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [KEY] },
    cookies: {
      keys: ['kmeweb-test-provider-cookie-key'],
      long: { signed: true, sameSite: 'lax' },
      short: { signed: true, sameSite: 'lax' },
    },
    scopes: ['openid', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name'],
      groups: ['groups'],
    },
    // The scopes' claims go into the ID token itself, as Entra ID, Okta and Keycloak can.
    conformIdTokenClaims: false,
    pkce: { methods: ['S256'], required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    },
    renderError,
    // One URL per step (the form posts back to it): a test can tell the consent page by URL.
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}/${interaction.prompt.name}`,
    },
    async findAccount(ctx, sub) {
      const found = state.accounts.get(sub);
      if (!found) return undefined;
      return {
        accountId: sub,
        async claims() {
          const { email, email_verified, name, groups } = state.accounts.get(sub) || found;
          return { sub, email, email_verified, name, groups };
        },
      };
    },
    // A refused user with a session and an earlier grant still goes through the consent
    // interaction, where the refusal is answered.
    async loadExistingGrant(ctx) {
      if (isRefused(ctx.oidc.session.accountId)) return undefined;
      const grantId =
        ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      return grantId ? ctx.oidc.provider.Grant.find(grantId) : undefined;
    },
  });

  // kmeweb's test servers take a new loopback port each time: any loopback URI is registered.
  provider.Client.prototype.redirectUriAllowed = isLoopback;
  provider.Client.prototype.postLogoutRedirectUriAllowed = isLoopback;

  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && ctx.status === 200 && ctx.body?.id_token && state.misbehave) {
      const mode = state.misbehave;
      state.misbehave = null;
      ctx.body = { ...ctx.body, id_token: misbehave(ctx.body.id_token, mode, issuer) };
    }
  });

  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
  if (args.verbose) {
    for (const event of ['authorization.error', 'grant.error', 'end_session.error']) {
      provider.on(event, (ctx, err) => {
        console.error(`${event}:`, err.message, err.error_description);
      });
    }
  }
  return provider;
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

function send(res, status, type, body) {
  res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'no-store' });
  res.end(body);
}

async function interaction(provider, req, res, uid, step) {
  const details = await provider.interactionDetails(req, res);
  const client = await provider.Client.find(details.params.client_id);
  const clientName = client?.clientName || details.params.client_id;
  const form = req.method === 'POST' ? new URLSearchParams(await readBody(req)) : null;
  const signedIn = state.accounts.get(details.session?.accountId);

  if (details.prompt.name === 'login') {
    if (step !== 'login' || !form) return send(res, 200, 'text/html', loginPage(uid, clientName));
    const login = form.get('login') || '';
    const found = byLogin(login);
    if (!found || found.password !== (form.get('password') || '')) {
      const html = loginPage(uid, clientName, login, 'Wrong login or password.');
      return send(res, 200, 'text/html', html);
    }
    if (state.refused.has(found.login)) return provider.interactionFinished(req, res, REFUSAL);
    const result = { login: { accountId: found.sub } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }

  // consent
  if (!signedIn || state.refused.has(signedIn.login)) {
    return provider.interactionFinished(req, res, REFUSAL);
  }
  if (step !== 'consent' || !form) {
    const scopes = [...(details.prompt.details.missingOIDCScope || [])];
    return send(res, 200, 'text/html', consentPage(uid, clientName, signedIn, scopes));
  }
  if (form.get('cancel')) {
    const cancelled = { error: 'access_denied', error_description: 'the user cancelled' };
    return provider.interactionFinished(req, res, cancelled);
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: signedIn.sub, clientId: details.params.client_id });
  const { missingOIDCScope, missingOIDCClaims } = details.prompt.details;
  if (missingOIDCScope) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims) grant.addOIDCClaims(missingOIDCClaims);
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  return provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function control(req, res, path) {
  const remote = req.socket.remoteAddress || '';
  if (!['127.0.0.1', '::1', '::ffff:127.0.0.1'].includes(remote)) {
    return send(res, 403, 'application/json', '{"error":"loopback only"}');
  }
  const raw = req.method === 'GET' ? '' : await readBody(req);
  const body = raw ? JSON.parse(raw) : {};
  const route = `${req.method} ${path}`;
  if (route === 'POST /__test/reset') {
    storage.clear();
    state.refused = new Set();
    state.misbehave = null;
    setAccounts(body.accounts || []);
  } else if (route === 'PUT /__test/accounts') {
    setAccounts(body);
  } else if (route === 'PUT /__test/refused') {
    state.refused = new Set(body.map(String));
  } else if (route === 'POST /__test/misbehave') {
    if (!MODES.has(body.mode)) throw new Error(`mode must be one of ${[...MODES].join(', ')}`);
    state.misbehave = body.mode;
  } else if (route !== 'GET /__test/state') {
    return send(res, 404, 'application/json', '{"error":"no such control endpoint"}');
  }
  const answer = {
    accounts: [...state.accounts.values()],
    refused: [...state.refused],
    misbehave: state.misbehave,
    kid: KEY.kid,
  };
  return send(res, 200, 'application/json', JSON.stringify(answer));
}

const server = createServer();
server.listen(Number(args.port), '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = buildProvider(issuer);
  const callback = provider.callback();
  server.on('request', async (req, res) => {
    const { pathname } = new URL(req.url, issuer);
    const match = pathname.match(/^\/interaction\/([^/]+)\/(login|consent)$/);
    try {
      if (pathname.startsWith('/__test/')) return await control(req, res, pathname);
      if (match) return await interaction(provider, req, res, match[1], match[2]);
      return callback(req, res);
    } catch (err) {
      if (res.headersSent) return res.end();
      if (pathname.startsWith('/__test/')) {
        return send(res, 400, 'application/json', JSON.stringify({ error: err.message }));
      }
      console.error(`${req.method} ${pathname}:`, err.message);
      const why = escape(err.error_description || err.message);
      const html = page('Something went wrong', `<p>${why}</p>`);
      return send(res, err.statusCode || 500, 'text/html', html);
    }
  });
  process.stdout.write(`${JSON.stringify({ issuer, kid: KEY.kid })}\n`);
});
server.on('error', (err) => {
  console.error(`cannot listen on 127.0.0.1:${args.port}: ${err.message}`);
  process.exit(1);
});

if (args['exit-with-stdin']) {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('close', () => process.exit(0));
  process.stdin.resume();
}
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
