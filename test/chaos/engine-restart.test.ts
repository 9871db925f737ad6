// Short version of the Docker engine restart drill of docs/RELIABILITY.md, on a daemon of its own (the shared test engine is never restarted).
import t from 'tap';
import { figureLine } from '../helpers/chaos-common.ts';
import { engineRestartDrill } from '../helpers/chaos-drills.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();

void t.test('the Docker engine restarts during a job: the agent notices, reports the job, and serves the next', async (t) => {
  const result = await engineRestartDrill({ dockerHost: env.dockerHost, trainerImage: env.trainerImage }, { restarts: 1 });
  for (const figure of result.figures) {
    t.comment(figureLine(figure));
    for (const outcome of figure.outcomes) t.equal(outcome.count, outcome.target ?? 0, `${figure.tried}: ${outcome.what}`);
  }
  t.comment(JSON.stringify(result.details));
});
