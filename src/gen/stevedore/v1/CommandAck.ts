// Original file: proto/stevedore/v1/session.proto

import type { Error as _stevedore_v1_Error, Error__Output as _stevedore_v1_Error__Output } from '../../stevedore/v1/Error.ts';

export interface CommandAck {
  'commandId'?: (string);
  'accepted'?: (boolean);
  'error'?: (_stevedore_v1_Error | null);
}

export interface CommandAck__Output {
  'commandId': (string);
  'accepted': (boolean);
  'error': (_stevedore_v1_Error__Output | null);
}
