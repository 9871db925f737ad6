// Short version of the coordinator outage drill of docs/RELIABILITY.md (npm run chaos: 5 minutes).
import t from 'tap';
import { figureLine } from '../helpers/chaos-common.ts';
import { coordinatorOutageDrill } from '../helpers/chaos-drills.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();

void t.test('the coordinator is down for 6 s while two jobs run: jobs undisturbed, every event delivered once', async (t) => {
  const result = await coordinatorOutageDrill({ dockerHost: env.dockerHost, trainerImage: env.trainerImage }, { outageMs: 6000, jobs: 2 });
  for (const figure of result.figures) {
    t.comment(figureLine(figure));
    for (const outcome of figure.outcomes) t.equal(outcome.count, outcome.target ?? 0, `${figure.tried}: ${outcome.what}`);
  }
  t.comment(JSON.stringify(result.details));
});
