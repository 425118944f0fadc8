email = ENV.fetch("BOOTSTRAP_ADMIN_EMAIL").downcase
user = User.find_by(email: email)
if user
  puts "Chat: #{email} exists, left as it is"
else
  user = I18n.with_locale(ENV.fetch("DEFAULT_LOCALE")) do
    AccountBuilder.new(
      account_name: ENV.fetch("BOOTSTRAP_ACCOUNT_NAME"),
      user_full_name: ENV.fetch("BOOTSTRAP_ADMIN_NAME"),
      email: email,
      user_password: ENV.fetch("BOOTSTRAP_ADMIN_PASSWORD"),
      super_admin: true,
      confirmed: true
    ).perform.first
  end
  puts "Chat: created super admin #{email} and its account"
end
site = ENV.fetch("BOOTSTRAP_WEBSITE_URL", "")
unless site.empty?
  account = user.accounts.order(:id).first
  abort "Chat: #{email} belongs to no account, so the website inbox has nowhere to go" unless account
  inbox = account.inboxes.where(channel_type: "Channel::WebWidget").find { |i| i.channel.website_url == site }
  inbox ||= ActiveRecord::Base.transaction do
    widget = Channel::WebWidget.create!(account: account, website_url: site)
    account.inboxes.create!(name: ENV.fetch("BOOTSTRAP_WEBSITE_NAME"), channel: widget)
  end
  InboxMember.find_or_create_by!(inbox: inbox, user: user)
  puts "Chat: website inbox for #{site} ready"
end
Redis::Alfred.delete(Redis::Alfred::CHATWOOT_INSTALLATION_ONBOARDING)
