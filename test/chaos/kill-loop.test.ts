// Short version of the kill loop of docs/RELIABILITY.md (npm run chaos runs 50 kills).
import t from 'tap';
import { figureLine } from '../helpers/chaos-common.ts';
import { killLoopDrill } from '../helpers/chaos-drills.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();

void t.test('kill -9 of the agent 5 times at random moments during a checkpointing job: nothing lost, nothing twice', async (t) => {
  const result = await killLoopDrill({ dockerHost: env.dockerHost, trainerImage: env.trainerImage }, { kills: 5, seed: 5, minAliveMs: 500, maxAliveMs: 1500 });
  for (const figure of result.figures) {
    t.comment(figureLine(figure));
    for (const outcome of figure.outcomes) t.equal(outcome.count, outcome.target ?? 0, `${figure.tried}: ${outcome.what}`);
  }
  t.comment(JSON.stringify(result.details));
});
