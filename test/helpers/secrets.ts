// Canary secrets: THE secret values the tests configure wherever a secret goes
// (S3 secret keys, registry passwords, join tokens). Long and unique, so that
// scripts/check-secrets.ts can find any of them in the run's logs
// (STEVEDORE_TEST_LOG_DIR) after the tests: a hit means a secret reached a log.
// They hold "/" and "+" as real S3 secret keys do, so that their URL-encoded
// form differs from the plain one.

/** The secretAccessKey of every S3 endpoint the tests configure (s3rver accepts any secret). */
export const CANARY_S3_SECRET = 'stevedore-canary-s3-secret-3f9a1c/7e2b+d4086a5c19e';
/** The password of the test registry's account (test/fixtures/engine/registry.ts). */
export const CANARY_REGISTRY_PASSWORD = 'stevedore-canary-registry-password-b71e/94c0+2d5a';
/** A node join token, for the coordinator's enrolment when it comes. */
export const CANARY_JOIN_TOKEN = 'stevedore-canary-join-token-5c8d2e/f13a+9b7604e';

/** Every canary by name, for the scan. */
export const CANARIES: Readonly<Record<string, string>> = {
  's3 secret': CANARY_S3_SECRET,
  'registry password': CANARY_REGISTRY_PASSWORD,
  'join token': CANARY_JOIN_TOKEN,
};
