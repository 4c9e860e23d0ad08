import { Component } from '@angular/core';
import { RouterLink } from '@angular/router';

@Component({
  selector: 'app-not-found-page',
  imports: [RouterLink],
  template: `
    <h1 data-testid="page-title">Page not found</h1>
    <p data-testid="page-not-found">There is nothing here. <a routerLink="/tasks">Back to the tasks</a>.</p>
  `,
})
export class NotFoundPage {}
