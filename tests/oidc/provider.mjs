// A real OpenID provider for the tests: panva's oidc-provider on loopback.
//
// Its configuration comes as JSON in OIDC_TEST_CONFIG: {port, clients: [...], users: {id: claims}}. The provider
// is used as shipped (PKCE S256, code reuse revocation, RFC 9207 `iss`, the device flow, its development login
// and consent pages); only the accounts are ours. It prints "listening <issuer>" once it accepts connections, and
// exits when its stdin closes, so a crashed test run leaves no provider behind.
import Provider from 'oidc-provider';

const config = JSON.parse(process.env.OIDC_TEST_CONFIG);
const issuer = `http://127.0.0.1:${config.port}`;
const users = config.users;

// `alice~t1` is the account `alice` with the e-mail alice+t1@...: each test signs in as people of its own.
function lookup(id) {
  const [base, tag] = id.split('~');
  const claims = users[base];
  if (!claims || !tag) return claims;
  return { ...claims, email: claims.email.replace('@', `+${tag}@`) };
}

const provider = new Provider(issuer, {
  clients: config.clients,
  // Test keys, fixed per run by the fixture: a key rotation test restarts the provider with another set.
  jwks: { keys: config.jwks },
  cookies: { keys: [config.cookie_key] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  // Every client, confidential ones included (RFC 9700 2.1.1).
  pkce: { required: () => true },
  ttl: { DeviceCode: 600, AuthorizationCode: 60, Interaction: 600, Session: 600, Grant: 600 },
  async findAccount(ctx, id) {
    const claims = lookup(id);
    if (!claims) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...claims };
      },
    };
  },
  // Consent is given on the provider's own page (the tests post it), never skipped.
});
provider.proxy = false;

const server = provider.listen(config.port, '127.0.0.1', () => {
  process.stdout.write(`listening ${issuer}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => server.close(() => process.exit(0)));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
