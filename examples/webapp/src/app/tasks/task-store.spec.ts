import { TestBed } from '@angular/core/testing';

import { TaskDraft } from './task';
import { STORAGE_KEY, TaskStore } from './task-store';

const draft: TaskDraft = { title: '  Ship it  ', description: ' now ', dueDate: '', status: 'todo' };

function freshStore(): TaskStore {
  TestBed.resetTestingModule();
  return TestBed.inject(TaskStore);
}

describe('TaskStore', () => {
  beforeEach(() => localStorage.clear());

  it('starts from the three seed tasks in a new browser', () => {
    const store = freshStore();
    expect(store.tasks().map((t) => t.id)).toEqual([1, 2, 3]);
  });

  it('creates a task with the next id, trimmed, and persists it', () => {
    const created = freshStore().create(draft);
    expect(created).toEqual({ id: 4, title: 'Ship it', description: 'now', dueDate: '', status: 'todo' });
    const reloaded = freshStore();
    expect(reloaded.get(4)?.title).toBe('Ship it');
    expect(JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '[]')).toHaveLength(4);
  });

  it('updates an existing task and survives a reload', () => {
    const store = freshStore();
    store.update(2, { ...draft, title: 'Renamed', status: 'done' });
    expect(freshStore().get(2)).toMatchObject({ id: 2, title: 'Renamed', status: 'done' });
  });

  it('refuses to update or remove a task that does not exist', () => {
    const store = freshStore();
    expect(store.update(99, draft)).toBeUndefined();
    expect(store.remove(99)).toBe(false);
    expect(store.count()).toBe(3);
  });

  it('removes a task for good', () => {
    const store = freshStore();
    expect(store.remove(1)).toBe(true);
    expect(freshStore().tasks().map((t) => t.id)).toEqual([2, 3]);
  });

  it('never reuses the id of the newest task after a delete', () => {
    const store = freshStore();
    store.remove(3);
    store.remove(2);
    expect(store.create(draft).id).toBe(2);
    expect(store.create(draft).id).toBe(3);
  });

  it('falls back to the seed when the saved board is unreadable', () => {
    localStorage.setItem(STORAGE_KEY, '{not json');
    expect(freshStore().count()).toBe(3);
    localStorage.setItem(STORAGE_KEY, JSON.stringify([{ id: 'x' }]));
    expect(freshStore().count()).toBe(3);
  });

  it('restores the seed tasks on reset', () => {
    const store = freshStore();
    store.remove(1);
    store.create(draft);
    store.reset();
    expect(freshStore().tasks().map((t) => t.title)).toEqual([
      'Write the release notes',
      'Review the pipeline dashboard',
      'Rotate the registry credentials',
    ]);
  });
});
