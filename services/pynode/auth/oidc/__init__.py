"""Single sign-on with OpenID Connect: the auth service is the relying party; IdP tokens never leave it."""
