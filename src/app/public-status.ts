import type { ProductStatus, ServerStatus } from './status.js';

/** What `status` tells a caller without an admin credential: seats per product and health. */
export interface PublicStatus {
  /** `public`: key ids, licensee, listeners and activation details need an admin credential. */
  readonly view: 'public';
  readonly version: string;
  readonly mode: ServerStatus['mode'];
  readonly products: readonly ProductStatus[];
  readonly leasesHeld: number;
  /** Whether the server grants leases now, and if not why (as /readyz says). */
  readonly ready: boolean;
  readonly reason: string;
}

export function publicStatus(s: ServerStatus, health: { readonly ready: boolean; readonly reason: string }): PublicStatus {
  return { view: 'public', version: s.version, mode: s.mode, products: s.products, leasesHeld: s.leasesHeld, ready: health.ready, reason: health.reason };
}
