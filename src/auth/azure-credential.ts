import { ClientSecretCredential } from '@azure/identity';
import { BlobServiceClient } from '@azure/storage-blob';
import { pipelineOptions } from '../stores/clients.ts';
import {
  isServicePrincipalText,
  serviceFromKeyOrSas,
  servicePrincipalOf,
} from './azure-service.ts';

// A rule's Azure client is built by `blobServiceFor` (azure-service.ts), which loads
// `@azure/identity` (and MSAL with it) only for the credentials that need it.
export {
  type AzureCredentialSources,
  type AzureService,
  blobServiceFor,
} from './azure-service.ts';

/**
 * Builds the client from a secret's text, at once: a connection string, an account key, a SAS
 * token, or a service principal as JSON `{"tenantId","clientId","clientSecret"}`. Errors say
 * which secret, never what it holds. (This module loads `@azure/identity` with it.)
 */
export function serviceFromSecret(url: string, text: string, where: string): BlobServiceClient {
  if (!isServicePrincipalText(text)) return serviceFromKeyOrSas(url, text, where);
  const principal = servicePrincipalOf(text, where);
  return new BlobServiceClient(
    url,
    new ClientSecretCredential(principal.tenantId, principal.clientId, principal.clientSecret),
    pipelineOptions,
  );
}
