import { Injectable, computed, signal } from '@angular/core';

import { SEED_TASKS, TASK_STATUSES, Task, TaskDraft } from './task';

/** localStorage key holding the board; bump the suffix if the shape changes. */
export const STORAGE_KEY = 'webapp.tasks.v1';

/**
 * The task board, kept in localStorage so it survives reloads.
 * A browser with no (or unreadable) saved board starts from the three seed tasks.
 */
@Injectable({ providedIn: 'root' })
export class TaskStore {
  private readonly state = signal<Task[]>(load());

  /** Every task, in creation order. */
  readonly tasks = this.state.asReadonly();
  readonly count = computed(() => this.state().length);

  get(id: number): Task | undefined {
    return this.state().find((task) => task.id === id);
  }

  create(draft: TaskDraft): Task {
    const id = this.state().reduce((max, task) => Math.max(max, task.id), 0) + 1;
    const task: Task = { ...normalise(draft), id };
    this.save([...this.state(), task]);
    return task;
  }

  /** Replace the task's fields; returns undefined when no task has this id. */
  update(id: number, draft: TaskDraft): Task | undefined {
    if (!this.get(id)) {
      return undefined;
    }
    const task: Task = { ...normalise(draft), id };
    this.save(this.state().map((t) => (t.id === id ? task : t)));
    return task;
  }

  /** Remove the task; returns false when no task has this id. */
  remove(id: number): boolean {
    const kept = this.state().filter((task) => task.id !== id);
    if (kept.length === this.state().length) {
      return false;
    }
    this.save(kept);
    return true;
  }

  /** Forget every change and start again from the seed tasks. */
  reset(): void {
    this.save(SEED_TASKS.map((task) => ({ ...task })));
  }

  private save(tasks: Task[]): void {
    this.state.set(tasks);
    localStorage.setItem(STORAGE_KEY, JSON.stringify(tasks));
  }
}

function normalise(draft: TaskDraft): TaskDraft {
  return {
    title: draft.title.trim(),
    description: draft.description.trim(),
    dueDate: draft.dueDate,
    status: draft.status,
  };
}

function isTask(value: unknown): value is Task {
  if (typeof value !== 'object' || value === null) {
    return false;
  }
  const t = value as Record<string, unknown>;
  return (
    typeof t['id'] === 'number' &&
    typeof t['title'] === 'string' &&
    typeof t['description'] === 'string' &&
    typeof t['dueDate'] === 'string' &&
    TASK_STATUSES.includes(t['status'] as Task['status'])
  );
}

function load(): Task[] {
  const raw = localStorage.getItem(STORAGE_KEY);
  if (raw !== null) {
    try {
      const parsed: unknown = JSON.parse(raw);
      if (Array.isArray(parsed) && parsed.every(isTask)) {
        return parsed;
      }
    } catch {
      // unreadable board: fall through to the seed
    }
  }
  return SEED_TASKS.map((task) => ({ ...task }));
}
