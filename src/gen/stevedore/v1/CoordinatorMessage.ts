// Original file: proto/stevedore/v1/session.proto

import type { Registered as _stevedore_v1_Registered, Registered__Output as _stevedore_v1_Registered__Output } from '../../stevedore/v1/Registered.ts';
import type { Command as _stevedore_v1_Command, Command__Output as _stevedore_v1_Command__Output } from '../../stevedore/v1/Command.ts';
import type { EventAck as _stevedore_v1_EventAck, EventAck__Output as _stevedore_v1_EventAck__Output } from '../../stevedore/v1/EventAck.ts';
import type { HeartbeatAck as _stevedore_v1_HeartbeatAck, HeartbeatAck__Output as _stevedore_v1_HeartbeatAck__Output } from '../../stevedore/v1/HeartbeatAck.ts';
import type { SessionError as _stevedore_v1_SessionError, SessionError__Output as _stevedore_v1_SessionError__Output } from '../../stevedore/v1/SessionError.ts';

export interface CoordinatorMessage {
  'registered'?: (_stevedore_v1_Registered | null);
  'command'?: (_stevedore_v1_Command | null);
  'eventAck'?: (_stevedore_v1_EventAck | null);
  'heartbeatAck'?: (_stevedore_v1_HeartbeatAck | null);
  'error'?: (_stevedore_v1_SessionError | null);
  'msg'?: "registered"|"command"|"eventAck"|"heartbeatAck"|"error";
}

export interface CoordinatorMessage__Output {
  'registered'?: (_stevedore_v1_Registered__Output | null);
  'command'?: (_stevedore_v1_Command__Output | null);
  'eventAck'?: (_stevedore_v1_EventAck__Output | null);
  'heartbeatAck'?: (_stevedore_v1_HeartbeatAck__Output | null);
  'error'?: (_stevedore_v1_SessionError__Output | null);
  'msg'?: "registered"|"command"|"eventAck"|"heartbeatAck"|"error";
}
