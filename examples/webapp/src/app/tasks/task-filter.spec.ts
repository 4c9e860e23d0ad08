import { SEED_TASKS } from './task';
import { filterTasks } from './task-filter';

describe('filterTasks', () => {
  it('keeps every task when the query is empty or blank', () => {
    expect(filterTasks(SEED_TASKS, '')).toHaveLength(3);
    expect(filterTasks(SEED_TASKS, '   ')).toHaveLength(3);
  });

  it('matches the title case-insensitively', () => {
    expect(filterTasks(SEED_TASKS, 'RELEASE').map((t) => t.id)).toEqual([1]);
  });

  it('matches the description too', () => {
    expect(filterTasks(SEED_TASKS, 'approval page').map((t) => t.id)).toEqual([2]);
  });

  it('needs every word to match, in any order', () => {
    expect(filterTasks(SEED_TASKS, 'credentials registry').map((t) => t.id)).toEqual([3]);
    expect(filterTasks(SEED_TASKS, 'registry release')).toEqual([]);
  });

  it('does not modify the input list', () => {
    const tasks = [...SEED_TASKS];
    filterTasks(tasks, 'release');
    expect(tasks).toHaveLength(3);
  });
});
