// Original file: proto/stevedore/v1/session.proto

import type { AttemptState as _stevedore_v1_AttemptState, AttemptState__Output as _stevedore_v1_AttemptState__Output } from '../../stevedore/v1/AttemptState.ts';
import type { Error as _stevedore_v1_Error, Error__Output as _stevedore_v1_Error__Output } from '../../stevedore/v1/Error.ts';

export interface AttemptExited {
  'state'?: (_stevedore_v1_AttemptState);
  'exitCode'?: (number);
  'error'?: (_stevedore_v1_Error | null);
  'oomKilled'?: (boolean);
}

export interface AttemptExited__Output {
  'state': (_stevedore_v1_AttemptState__Output);
  'exitCode': (number);
  'error': (_stevedore_v1_Error__Output | null);
  'oomKilled': (boolean);
}
