import { Component, OnInit, inject } from '@angular/core';
import { RouterLink, RouterLinkActive, RouterOutlet } from '@angular/router';

import { BuildInfo } from './build-info';

@Component({
  selector: 'app-root',
  imports: [RouterOutlet, RouterLink, RouterLinkActive],
  template: `
    <header class="top">
      <a routerLink="/tasks" class="brand" data-testid="brand">Task board</a>
      <nav>
        <a routerLink="/tasks" routerLinkActive="active" [routerLinkActiveOptions]="{ exact: true }"
           data-testid="nav-tasks">Tasks</a>
        <a routerLink="/tasks/new" routerLinkActive="active" data-testid="nav-new">New task</a>
        <a routerLink="/about" routerLinkActive="active" data-testid="nav-about">About</a>
        <a routerLink="/healthz" routerLinkActive="active" data-testid="nav-healthz">Health</a>
      </nav>
      @if (info.config().environment) {
        <span class="env" data-testid="env-name">{{ info.config().environment }}</span>
      }
    </header>
    @if (info.config().banner) {
      <p class="banner" data-testid="env-banner">{{ info.config().banner }}</p>
    }
    <main>
      <router-outlet />
    </main>
    <footer>
      @if (info.health(); as health) {
        Version <span data-testid="app-version">{{ health.version }}</span>
        · commit <span data-testid="app-commit">{{ health.commit.slice(0, 12) }}</span>
      } @else {
        <span data-testid="app-version-missing">{{ info.healthError() || 'loading…' }}</span>
      }
    </footer>
  `,
})
export class App implements OnInit {
  protected readonly info = inject(BuildInfo);

  ngOnInit(): void {
    this.info.load();
  }
}
