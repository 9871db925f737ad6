// Original file: proto/stevedore/v1/control.proto


export interface ListJobsRequest {
}

export interface ListJobsRequest__Output {
}
