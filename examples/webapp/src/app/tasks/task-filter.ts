import { Task } from './task';

/**
 * Tasks whose title or description contains every word of `query`
 * (case-insensitive); an empty query keeps every task. Order is preserved.
 */
export function filterTasks(tasks: readonly Task[], query: string): Task[] {
  const words = query.toLowerCase().split(/\s+/).filter((w) => w.length > 0);
  if (words.length === 0) {
    return [...tasks];
  }
  return tasks.filter((task) => {
    const text = `${task.title} ${task.description}`.toLowerCase();
    return words.every((word) => text.includes(word));
  });
}
