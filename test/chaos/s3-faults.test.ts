// Short version of the S3 fault drill of docs/RELIABILITY.md (npm run chaos runs 30 checkpoints).
import t from 'tap';
import { figureLine } from '../helpers/chaos-common.ts';
import { s3FaultDrill } from '../helpers/chaos-drills.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();

void t.test('checkpoints through an S3 endpoint failing 20% of requests, 2.5 s stalls included: all committed, none corrupt', async (t) => {
  const result = await s3FaultDrill({ dockerHost: env.dockerHost, trainerImage: env.trainerImage }, { checkpoints: 3, everySteps: 12, stallMs: 2500, seed: 3 });
  for (const figure of result.figures) {
    t.comment(figureLine(figure));
    for (const outcome of figure.outcomes) t.equal(outcome.count, outcome.target ?? 0, `${figure.tried}: ${outcome.what}`);
  }
  t.comment(JSON.stringify(result.details));
});
