// Peer for tokenguard's benchmark: panva/oidc-provider as an authorization server whose userinfo
// endpoint (/me) verifies a DPoP proof on every request (lib/shared/access_token.js
// getValidateAccessToken -> lib/helpers/validate_dpop.js, then checkDpopReplay and the jkt binding).
//
// Environment (set by bench_peer.py):
//   PORT       port to listen on (127.0.0.1)
//   ISSUER     issuer identifier (the nginx front URL)
//   WORKERS    1: a single process; N>=2: node:cluster primary + N workers sharing the port
//   ADAPTER    "memory" (single process only) or "redis"
//   REDIS_URL  for ADAPTER=redis
//   JWKS       JSON {"keys":[...]} private signing keys (same in every worker)
//   COOKIE_KEY cookie signing key (same in every worker)
//   CLIENT_SECRET  secret of the demo client
import cluster from 'node:cluster';
import * as crypto from 'node:crypto';

const env = process.env;
const WORKERS = Number(env.WORKERS || 1);
const ADAPTER = env.ADAPTER || 'memory';

if (WORKERS > 1 && ADAPTER === 'memory') {
  // per-process memory: a token issued by one worker is unknown to the other, and a proof
  // replayed to the other worker would be accepted
  console.error('WORKERS>1 needs a shared adapter (ADAPTER=redis)');
  process.exit(2);
}

if (cluster.isPrimary) {
  // one signing key and cookie key for every worker (workers inherit process.env)
  if (!env.JWKS) {
    const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
    env.JWKS = JSON.stringify({ keys: [{ ...privateKey.export({ format: 'jwk' }), kid: 'bench-sig', alg: 'ES256', use: 'sig' }] });
  }
  env.COOKIE_KEY ||= crypto.randomBytes(32).toString('base64url');
}

// ---------------------------------------------------------------- adapters

// Unbounded TTL map. oidc-provider's bundled MemoryAdapter (lib/adapters/memory_adapter.js) keeps only
// the last 1000-2000 entries (lib/helpers/lru.js, maxSize 1000, two generations), so under load it forgets
// ReplayDetection jtis within a second and would accept a replay; this one keeps every jti for its full
// 300 s window, as a real deployment's store must.
class MemoryAdapter {
  static store = new Map();

  static sweep() {
    const now = Date.now();
    for (const [k, v] of MemoryAdapter.store) if (v.exp && v.exp <= now) MemoryAdapter.store.delete(k);
  }

  constructor(name) { this.name = name; }

  key(id) { return `${this.name}:${id}`; }

  async upsert(id, payload, expiresIn) {
    const exp = expiresIn ? Date.now() + expiresIn * 1000 : 0;
    MemoryAdapter.store.set(this.key(id), { payload, exp });
    if (payload.uid) MemoryAdapter.store.set(`uid:${payload.uid}`, { payload: id, exp });
    if (payload.userCode) MemoryAdapter.store.set(`userCode:${payload.userCode}`, { payload: id, exp });
    if (payload.grantId) {
      const gk = `grant:${payload.grantId}`;
      const g = MemoryAdapter.store.get(gk) || { payload: [], exp: 0 };
      g.payload.push(this.key(id));
      MemoryAdapter.store.set(gk, g);
    }
  }

  static get(key) {
    const e = MemoryAdapter.store.get(key);
    if (!e) return undefined;
    if (e.exp && e.exp <= Date.now()) { MemoryAdapter.store.delete(key); return undefined; }
    return e.payload;
  }

  async find(id) { return MemoryAdapter.get(this.key(id)); }

  async findByUid(uid) {
    const id = MemoryAdapter.get(`uid:${uid}`);
    return id ? this.find(id) : undefined;
  }

  async findByUserCode(userCode) {
    const id = MemoryAdapter.get(`userCode:${userCode}`);
    return id ? this.find(id) : undefined;
  }

  async consume(id) {
    const p = MemoryAdapter.get(this.key(id));
    if (p) p.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { MemoryAdapter.store.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    const g = MemoryAdapter.get(`grant:${grantId}`) || [];
    for (const k of g) MemoryAdapter.store.delete(k);
    MemoryAdapter.store.delete(`grant:${grantId}`);
  }
}

// ESM port of oidc-provider's example/adapters/redis.js (ioredis).
async function redisAdapter() {
  const { default: Redis } = await import('ioredis');
  // auto-pipelining batches the commands issued in one event-loop tick into one write (favours the peer)
  const client = new Redis(env.REDIS_URL, {
    keyPrefix: 'oidc:', enableAutoPipelining: env.REDIS_AUTOPIPELINE !== '0',
  });
  const grantable = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode',
    'BackchannelAuthenticationRequest']);
  const consumable = new Set(['AuthorizationCode', 'RefreshToken', 'DeviceCode',
    'BackchannelAuthenticationRequest']);

  return class RedisAdapter {
    constructor(name) { this.name = name; }

    key(id) { return `${this.name}:${id}`; }

    async upsert(id, payload, expiresIn) {
      const key = this.key(id);
      const multi = client.multi();
      if (consumable.has(this.name)) multi.hset(key, { payload: JSON.stringify(payload) });
      else multi.set(key, JSON.stringify(payload));
      if (expiresIn) multi.expire(key, expiresIn);
      if (grantable.has(this.name) && payload.grantId) {
        const grantKey = `grant:${payload.grantId}`;
        multi.rpush(grantKey, key);
        const ttl = await client.ttl(grantKey);
        if (expiresIn > ttl) multi.expire(grantKey, expiresIn);
      }
      if (payload.userCode) {
        multi.set(`userCode:${payload.userCode}`, id);
        multi.expire(`userCode:${payload.userCode}`, expiresIn);
      }
      if (payload.uid) {
        multi.set(`uid:${payload.uid}`, id);
        multi.expire(`uid:${payload.uid}`, expiresIn);
      }
      await multi.exec();
    }

    async find(id) {
      if (consumable.has(this.name)) {
        const data = await client.hgetall(this.key(id));
        if (!data || !Object.keys(data).length) return undefined;
        const { payload, ...rest } = data;
        return { ...rest, ...JSON.parse(payload) };
      }
      const data = await client.get(this.key(id));
      return data ? JSON.parse(data) : undefined;
    }

    async findByUid(uid) {
      const id = await client.get(`uid:${uid}`);
      return id ? this.find(id) : undefined;
    }

    async findByUserCode(userCode) {
      const id = await client.get(`userCode:${userCode}`);
      return id ? this.find(id) : undefined;
    }

    async destroy(id) { await client.del(this.key(id)); }

    async revokeByGrantId(grantId) {
      const multi = client.multi();
      const tokens = await client.lrange(`grant:${grantId}`, 0, -1);
      tokens.forEach((t) => multi.del(t));
      multi.del(`grant:${grantId}`);
      await multi.exec();
    }

    async consume(id) {
      await client.hset(this.key(id), 'consumed', Math.floor(Date.now() / 1000));
    }
  };
}

// ---------------------------------------------------------------- provider

async function startWorker() {
  const { default: Provider } = await import('oidc-provider');

  let adapter;
  if (ADAPTER === 'redis') adapter = await redisAdapter();
  else {
    adapter = MemoryAdapter;
    setInterval(MemoryAdapter.sweep, 30_000).unref();
  }

  const configuration = {
    adapter,
    clients: [{
      client_id: 'bench-client',
      client_secret: env.CLIENT_SECRET || 'bench-secret',
      grant_types: ['authorization_code', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: ['https://client.invalid/cb'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256', // the provider's signing key is P-256
      dpop_bound_access_tokens: true, // every token of this client must be DPoP-bound (RFC 9449 §5.2)
    }],
    jwks: JSON.parse(env.JWKS),
    cookies: { keys: [env.COOKIE_KEY || crypto.randomBytes(32).toString('base64url')] },
    features: {
      dPoP: { enabled: true },             // default iat window: 300 s (CHALLENGE_OK_WINDOW), no nonce
      devInteractions: { enabled: false }, // replaced by the auto-login interaction below
      userinfo: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
    },
    scopes: ['openid'],
    claims: { openid: ['sub'] },
    pkce: { required: () => true },
    ttl: { AccessToken: 3600, Grant: 86400, Session: 86400, Interaction: 600 },
    // the bench user: no claims but sub
    async findAccount(ctx, id) {
      return { accountId: id, async claims() { return { sub: id }; } };
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  };

  const provider = new Provider(env.ISSUER, configuration);
  provider.proxy = true; // trust X-Forwarded-Proto from nginx (nginx sets Host to $host:$server_port)

  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  // Auto-login + auto-consent interaction for the bench user (no UI): it only serves to obtain a
  // genuine authorization_code -> DPoP-bound access token before the timed run.
  provider.use(async (ctx, next) => {
    if (!ctx.path.startsWith('/interaction/')) return next();
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    let result;
    if (details.prompt.name === 'login') {
      result = { login: { accountId: 'bench-user' } };
    } else if (details.prompt.name === 'consent') {
      const grant = details.grantId
        ? await provider.Grant.find(details.grantId)
        : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      const d = details.prompt.details;
      if (d.missingOIDCScope) grant.addOIDCScope(d.missingOIDCScope.join(' '));
      if (d.missingOIDCClaims) grant.addOIDCClaims(d.missingOIDCClaims);
      const grantId = await grant.save();
      result = { consent: details.grantId ? {} : { grantId } };
    } else {
      ctx.status = 400;
      ctx.body = `unexpected prompt ${details.prompt.name}`;
      return undefined;
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: true,
    });
    ctx.status = 303;
    ctx.redirect(returnTo);
    return undefined;
  });

  const port = Number(env.PORT || 3000);
  const server = provider.listen(port, '127.0.0.1', () => {
    console.error(`oidc-provider pid ${process.pid} listening on 127.0.0.1:${port} (${ADAPTER})`);
  });
  // outlive nginx's idle upstream keep-alive connections (nginx keepalive_timeout 60s by default)
  server.keepAliveTimeout = 120_000;
  server.headersTimeout = 121_000;
}

// ---------------------------------------------------------------- main

if (WORKERS > 1 && cluster.isPrimary) {
  for (let i = 0; i < WORKERS; i += 1) cluster.fork();
  cluster.on('exit', (w, code, sig) => {
    console.error(`worker ${w.process.pid} exited (${sig || code})`);
    process.exit(1);
  });
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
    process.exit(0);
  });
} else {
  process.on('SIGTERM', () => process.exit(0)); // exit cleanly (lets --cpu-prof write its profile)
  await startWorker();
}
