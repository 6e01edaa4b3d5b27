/**
 * The web identity token the functions request from STS (AWS outbound identity federation) and
 * exchange for an Entra ID token: what the request asks for, and what the IAM policy allows
 * (`sts:IdentityTokenAudience`, `sts:DurationSeconds`, `sts:SigningAlgorithm`), from one place.
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_providers_outbound_policies.html
 */
export const WEB_IDENTITY_TOKEN = {
  /** Audience Azure expects of a federated token (workload identity federation). */
  audience: 'api://AzureADTokenExchange',
  signingAlgorithm: 'RS256',
  durationSeconds: 300,
} as const;
