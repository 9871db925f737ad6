// Original file: proto/stevedore/v1/session.proto

import type { LogLine as _stevedore_v1_LogLine, LogLine__Output as _stevedore_v1_LogLine__Output } from '../../stevedore/v1/LogLine.ts';

export interface LogChunk {
  'lines'?: (_stevedore_v1_LogLine)[];
}

export interface LogChunk__Output {
  'lines': (_stevedore_v1_LogLine__Output)[];
}
