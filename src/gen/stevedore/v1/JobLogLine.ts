// Original file: proto/stevedore/v1/control.proto

import type { LogLine as _stevedore_v1_LogLine, LogLine__Output as _stevedore_v1_LogLine__Output } from '../../stevedore/v1/LogLine.ts';

export interface JobLogLine {
  'attempt'?: (number);
  'line'?: (_stevedore_v1_LogLine | null);
}

export interface JobLogLine__Output {
  'attempt': (number);
  'line': (_stevedore_v1_LogLine__Output | null);
}
