import { createHmac, timingSafeEqual } from 'node:crypto';

/** The outcome of checking a request's credentials: what Azure would answer when they fail. */
export type AuthCheck = { ok: true } | { ok: false; status: number; code: string; message: string };

const AUTHENTICATION_FAILED =
  'Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.';

/** Parameters that make up a SAS, removed from a URL before the shim signs it with the key. */
export const SAS_PARAMETERS = new Set([
  'sv',
  'ss',
  'srt',
  'sp',
  'st',
  'se',
  'sip',
  'spr',
  'sr',
  'si',
  'sig',
  'ses',
  'sdd',
  'rscc',
  'rscd',
  'rsce',
  'rscl',
  'rsct',
  'skoid',
  'sktid',
  'skt',
  'ske',
  'sks',
  'skv',
  'saoid',
  'suoid',
  'scid',
  'sduoid',
  'skdutid',
  'srh',
  'srq',
]);

/** Azure's 403 AuthenticationFailed, with `detail` after its standard message. */
export function refused(detail: string): AuthCheck {
  return {
    ok: false,
    status: 403,
    code: 'AuthenticationFailed',
    message: `${AUTHENTICATION_FAILED} ${detail}`,
  };
}

function sameSignature(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** `/<account>/<container>/<blob>` of an emulator-style (path-style) URL, decoded. */
function pathParts(url: URL): { account: string; container: string; blob: string } {
  const [account = '', container = '', ...blob] = url.pathname.replace(/^\//, '').split('/');
  return {
    account: decodeURIComponent(account),
    container: decodeURIComponent(container),
    blob: blob.map(decodeURIComponent).join('/'),
  };
}

/**
 * The string-to-sign of a service SAS signed with the account key, by version.
 * https://learn.microsoft.com/rest/api/storageservices/create-service-sas
 */
function serviceStringToSign(account: string, url: URL): string {
  const q = (name: string) => url.searchParams.get(name) ?? '';
  const { container, blob } = pathParts(url);
  const resource = q('sr');
  const canonical = `/blob/${account}/${container}${resource === 'c' ? '' : `/${blob}`}`;
  const version = q('sv');
  const head = [q('sp'), q('st'), q('se'), canonical, q('si'), q('sip'), q('spr'), version];
  const tail = [q('rscc'), q('rscd'), q('rsce'), q('rscl'), q('rsct')];
  if (version >= '2020-12-06') {
    const timestamp =
      resource === 'bs'
        ? q('snapshot')
        : resource === 'bv'
          ? (url.searchParams.get('versionid') ?? '')
          : '';
    return [...head, resource, timestamp, q('ses'), ...tail].join('\n');
  }
  if (version >= '2018-11-09') {
    const timestamp = resource === 'bs' ? q('snapshot') : '';
    return [...head, resource, timestamp, ...tail].join('\n');
  }
  return [...head, ...tail].join('\n');
}

/**
 * The string-to-sign of an account SAS, by version.
 * https://learn.microsoft.com/rest/api/storageservices/create-account-sas
 */
function accountStringToSign(account: string, url: URL): string {
  const q = (name: string) => url.searchParams.get(name) ?? '';
  const fields = [
    account,
    q('sp'),
    q('ss'),
    q('srt'),
    q('st'),
    q('se'),
    q('sip'),
    q('spr'),
    q('sv'),
  ];
  if (q('sv') >= '2020-12-06') fields.push(q('ses'));
  return `${fields.join('\n')}\n`;
}

/**
 * Verifies a SAS signed with the account key (service SAS or account SAS) for a write to a
 * blob, as Azure does: signature, validity window, and that `sp` grants one of `permissions`.
 * Stored access policies (`si`) and user delegation SAS are not supported and are refused.
 */
export function verifySas(account: string, key: string, url: URL, permissions: string): AuthCheck {
  const params = url.searchParams;
  const signature = params.get('sig');
  if (!signature || !params.get('sv')) return refused('The SAS is incomplete.');
  if (params.has('si') || params.has('skoid')) {
    return refused('The local shim verifies only SAS signed with the account key.');
  }
  if (pathParts(url).account !== account) return refused('The SAS names another account.');
  const isAccountSas = params.has('ss') || params.has('srt');
  const stringToSign = isAccountSas
    ? accountStringToSign(account, url)
    : serviceStringToSign(account, url);
  const expected = createHmac('sha256', Buffer.from(key, 'base64'))
    .update(stringToSign, 'utf8')
    .digest('base64');
  if (!sameSignature(signature, expected)) return refused('Signature did not match.');
  const now = Date.now();
  const start = params.get('st');
  const expiry = Date.parse(params.get('se') ?? '');
  if (Number.isNaN(expiry) || now > expiry || (start && now < Date.parse(start))) {
    return refused('Signature not valid in the specified time frame.');
  }
  if (
    isAccountSas &&
    (!(params.get('ss') ?? '').includes('b') || !(params.get('srt') ?? '').includes('o'))
  ) {
    return {
      ok: false,
      status: 403,
      code: 'AuthorizationResourceTypeMismatch',
      message: 'This request is not authorized to perform this operation using this resource type.',
    };
  }
  const granted = params.get('sp') ?? '';
  if (![...permissions].some((permission) => granted.includes(permission))) {
    return {
      ok: false,
      status: 403,
      code: 'AuthorizationPermissionMismatch',
      message: 'This request is not authorized to perform this operation using this permission.',
    };
  }
  return { ok: true };
}
