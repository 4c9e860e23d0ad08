/** A task on the board. Dates are local calendar days as `YYYY-MM-DD` ('' = no due date). */
export type TaskStatus = 'todo' | 'doing' | 'done';

export const TASK_STATUSES: readonly TaskStatus[] = ['todo', 'doing', 'done'];

export interface Task {
  id: number;
  title: string;
  description: string;
  dueDate: string;
  status: TaskStatus;
}

/** What a form submits: a task without its id. */
export type TaskDraft = Omit<Task, 'id'>;

/** The three tasks a new browser starts with. */
export const SEED_TASKS: readonly Task[] = [
  {
    id: 1,
    title: 'Write the release notes',
    description: 'Summarise what changed since the last version.',
    dueDate: '',
    status: 'todo',
  },
  {
    id: 2,
    title: 'Review the pipeline dashboard',
    description: 'Check the stage durations and the approval page.',
    dueDate: '',
    status: 'doing',
  },
  {
    id: 3,
    title: 'Rotate the registry credentials',
    description: 'Old credentials expire at the end of the month.',
    dueDate: '',
    status: 'done',
  },
];
