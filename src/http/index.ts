export { Authenticator, type AuthenticatorOptions, type Identity } from './authenticate.js';
export {
  type AuthorizationOptions,
  authorizationOf,
  DEFAULT_MAX_HEADER_LENGTH,
  DEFAULT_MAX_SECRET_BYTES,
  parseAuthorizationHeader,
  type RequestHeaders,
  TOKEN_SCHEMES,
  type TokenCredentials,
  type TokenScheme,
} from './authorization.js';
