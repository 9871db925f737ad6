// The disk-full drill of docs/RELIABILITY.md: a full checkpoint volume, a full and a read-only state directory.
import t from 'tap';
import { figureLine } from '../helpers/chaos-common.ts';
import { diskFullDrill } from '../helpers/chaos-drills.ts';
import { testEngineEnv } from '../helpers/engine.ts';

const env = testEngineEnv();

void t.test('a full checkpoint volume fails its job clearly; another job runs on through a full state directory; a read-only state directory stops the start clearly', async (t) => {
  const result = await diskFullDrill({ dockerHost: env.dockerHost, trainerImage: env.trainerImage }, { stateFullMs: 3000 });
  for (const figure of result.figures) {
    t.comment(figureLine(figure));
    for (const outcome of figure.outcomes) t.equal(outcome.count, outcome.target ?? 0, `${figure.tried}: ${outcome.what}`);
  }
  t.comment(JSON.stringify(result.details));
});
