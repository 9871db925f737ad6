// Original file: proto/stevedore/v1/agent_local.proto


export interface GetStatusRequest {
}

export interface GetStatusRequest__Output {
}
