// PEM and date helpers shared by the HTTPS listener and `customs certs`. Apart from tls/certs.ts
// so that serving with HTTPS does not load node-forge, which only issuing certificates needs.

/** Every certificate in a PEM text, in order (a chain file holds several). */
export function pemCertificates(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
}

/** `2026-07-02` */
export function day(date: Date): string {
  return date.toISOString().slice(0, 10)
}
